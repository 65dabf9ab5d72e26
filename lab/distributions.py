"""Student's t and chi-square: tail probabilities and quantiles, without scipy.

    t_sf(2.1, 29)         # P(T > 2.1) with 29 degrees of freedom     (scipy.special.stdtr(29, -2.1))
    t_ppf(0.975, df)      # the t quantile, df an array               (scipy.special.stdtrit(df, 0.975))
    chi2_ppf(0.15, df)    # the lower 15% point of chi-square         (scipy.special.chdtri(df, 0.85))

What ``lab.stats`` reads its intervals and p-values with. Importing scipy.special costs ``python -m
lab show`` 0.13 s (its array-API layer loads numpy.f2py and numpy.ma), as long as the findings take
to compute, so these are written out here. Over df from 1 to 1e6 and p from 1e-12 to 1 - 1e-12 they
are within 7e-13 (relative) of 40-digit values, and within 1e-11 of scipy.special wherever scipy has
its digits (``tests/test_distributions.py`` holds them to 1e-10). Arrays broadcast as in numpy; the
work is done once per distinct (value, df).

The tails are regularized incomplete beta and gamma functions, each computed by the continued
fraction or series that converges with full relative precision where it is used, with the
prefactor in logs (so a deep tail neither underflows early nor loses digits to the lgamma of a large
df). A quantile is Newton's method on the log of a probability against the log of its argument: the
three functions solved are monotone and concave there (log-concave densities), so the iteration
converges from any start, and the start only saves steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

_EPS = 1e-16  # a continued fraction or series stops when its last factor or term is this close to 1 or 0
_TINY = 1e-300  # Lentz's guard against a zero denominator
_MAX_TERMS = 1_000_000  # never reached: about 10 sqrt(df) terms near the centre of a distribution
_LOG_2PI = math.log(2 * math.pi)
_NORMAL = NormalDist()


def _stirling(z: float) -> float:
    """lgamma(z) - ((z - 1/2) log z - z + log(2 pi) / 2) for z >= 10 (the Stirling series; error < 1e-17)."""
    r = 1 / (z * z)
    return (1 / 12 + r * (-1 / 360 + r * (1 / 1260 + r * (-1 / 1680 + r * (1 / 1188 + r * (-691 / 360360 + r / 156)))))) / z


def _lbeta(a: float, b: float) -> float:
    """log B(a, b) for the smaller argument small (here 1/2): lgamma(a) - lgamma(a + b) of a large ``a``
    is taken from Stirling's series, not as the difference of two large numbers."""
    a, b = max(a, b), min(a, b)
    if a < 10:
        return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
    return math.lgamma(b) - (a - 0.5) * math.log1p(b / a) - b * math.log(a + b) + b + _stirling(a) - _stirling(a + b)


def _log_beta_cf(a: float, b: float, x: float, log_x: float, log_1mx: float) -> float:
    """log I_x(a, b), the regularized incomplete beta, by its continued fraction (modified Lentz), for
    x < (a + 1) / (a + b + 2), where it converges fast. ``log_x`` and ``log_1mx`` come without
    rounding 1 - x."""
    c, d = 1.0, 1 - (a + b) * x / (a + 1)
    d = 1 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, _MAX_TERMS):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1 + num * d
            d = 1 / (d if abs(d) > _TINY else _TINY)
            c = 1 + num / c
            c = c if abs(c) > _TINY else _TINY
            h *= d * c
        if abs(d * c - 1) < _EPS:
            break
    return a * log_x + b * log_1mx - _lbeta(a, b) + math.log(h / a)


# ---- the regularized incomplete gamma functions P(a, x) and Q(a, x) = 1 - P(a, x) ----------------------

def _log_gamma_prefactor(a: float, x: float, log_x: float) -> float:
    """log(x^a e^-x / Gamma(a)); for a large through Stirling's series, without a * log x - lgamma(a)."""
    if a < 10:
        return a * log_x - x - math.lgamma(a)
    return -a * _u_minus_log1p((x - a) / a) + 0.5 * (math.log(a) - _LOG_2PI) - _stirling(a)


def _u_minus_log1p(u: float) -> float:
    """u - log(1 + u), by its series near 0, where the difference would lose the digits a large a multiplies."""
    if abs(u) > 0.1:
        return u - math.log1p(u)
    total, power, k = 0.0, -u, 1
    while True:  # u^2/2 - u^3/3 + ...: at most 16 terms
        k += 1
        power *= -u
        term = power / k
        total += term
        if abs(term) <= _EPS * abs(total):
            return total


def _gamma_parts(a: float, log_x: float) -> tuple[float, float]:
    """(log P(a, x), log Q(a, x)) at x = e^log_x: below a + 1 P by its series, above Q by its
    continued fraction (Lentz), the other as the complement."""
    x = math.exp(log_x)
    pre = _log_gamma_prefactor(a, x, log_x)
    if x < a + 1:
        term = total = 1 / a
        n = a
        for _ in range(_MAX_TERMS):
            n += 1
            term *= x / n
            total += term
            if term < total * _EPS:
                break
        log_p = pre + math.log(total)
        return log_p, math.log1p(-math.exp(log_p))
    b = x + 1 - a
    c, d = 1 / _TINY, 1 / b
    h = d
    for i in range(1, _MAX_TERMS):
        num = -i * (i - a)
        b += 2
        d = num * d + b
        d = 1 / (d if abs(d) > _TINY else _TINY)
        c = b + num / c
        c = c if abs(c) > _TINY else _TINY
        h *= d * c
        if abs(d * c - 1) < _EPS:
            break
    log_q = pre + math.log(h)
    return math.log1p(-math.exp(log_q)), log_q


# ---- Student's t, for t > 0: the tail P(T > t) and the centre P(0 < T < t) -------------------------

def _log1p_sq(s: float) -> float:
    """log(1 + s^2), also where s^2 overflows."""
    return math.log1p(s * s) if s < 1e150 else 2 * math.log(s)


def _t_parts(t: float, df: float) -> tuple[float, float]:
    """(log P(T > t), log P(0 < T < t)) for 0 < t < inf: one computed directly, the other as its
    complement to 1/2 (which then is at least 0.04, so nothing is lost)."""
    log_x, log_1mx = -_log1p_sq(t / math.sqrt(df)), -_log1p_sq(math.sqrt(df) / t)  # x = df / (df + t^2)
    if t * t * (df + 2) <= 3 * df and (df < _LARGE_DF or t < 1):  # y = 1 - x within the fraction's fast region
        centre = math.log(0.5) + _log_beta_cf(0.5, df / 2, math.exp(log_1mx), log_1mx, log_x)
        return math.log(0.5 - math.exp(centre)), centre
    if df >= _LARGE_DF and t * t < 10 * df:
        tail = math.log(0.5) + _log_beta_large_a(df / 2, log_x)
    else:
        tail = math.log(0.5) + _log_beta_cf(df / 2, 0.5, math.exp(log_x), log_x, log_1mx)
    return tail, math.log(0.5 - math.exp(tail))


#: from this df on, the tail comes from the expansion below: the continued fraction, its x then within
#: about 1 / df of 1, loses digits to cancellation (1e-11 at df = 1e6)
_LARGE_DF = 30


def _sinh_ratio_coefficients(n: int) -> list[float]:
    """c_k with (sinh(w/2) / (w/2))^(-1/2) = sum of c_k w^(2k), k < n (a power of a power series)."""
    f = [1 / (math.factorial(2 * j + 1) * 4 ** j) for j in range(n)]  # sinh(w/2) / (w/2) in powers of w^2
    c = [1.0]
    for k in range(1, n):
        c.append(sum((0.5 * j - k) * f[j] * c[k - j] for j in range(1, k + 1)) / k)
    return c


_SINH_RATIO = _sinh_ratio_coefficients(40)


def _log_beta_large_a(a: float, log_x: float) -> float:
    """log I_x(a, 1/2) for a >= 15 and x not small, by DiDonato and Morris's expansion (BGRAT in
    their algorithm 708) in upper incomplete gamma functions: with nu = a - 1/4 and z = -nu log x,
    I_x(a, 1/2) = nu^(-1/2) / B(a, 1/2) * sum_k c_k Gamma(1/2 + 2k, z) / nu^(2k), c_k from
    (sinh(w/2) / (w/2))^(-1/2). All its terms are scaled by e^z, which they share."""
    nu = a - 0.25
    z = -nu * log_x
    j = math.exp(_gamma_parts(0.5, math.log(z))[1] + z) * math.sqrt(math.pi)  # Gamma(1/2, z) e^z
    e = math.sqrt(z)  # z^(1/2 + 2k) e^-z / nu^(2k), times e^z
    total = j
    for k in range(1, len(_SINH_RATIO)):
        s = 2 * k - 1.5  # Gamma(s + 2, z) = s (s + 1) Gamma(s, z) + z^s e^-z (s + 1 + z)
        j = (s * (s + 1) * j + e * (s + 1 + z)) / (nu * nu)
        e *= log_x * log_x
        term = _SINH_RATIO[k] * j
        total += term
        if abs(term) <= _EPS * total:
            break
    return math.log(total) - z - 0.5 * math.log(nu) - _lbeta(a, 0.5)


def _t_log_pdf(t: float, df: float) -> float:
    return -(df + 1) / 2 * _log1p_sq(t / math.sqrt(df)) - 0.5 * math.log(df) - _lbeta(df / 2, 0.5)


def _t_sf(x: float, df: float) -> float:
    if math.isnan(x) or not 0 < df < math.inf:
        return math.nan
    if x == 0:
        return 0.5
    if math.isinf(x):
        return 0.0 if x > 0 else 1.0
    tail, centre = _t_parts(abs(x), df)
    return math.exp(tail) if x > 0 else 0.5 + math.exp(centre)


def _t_ppf(p: float, df: float) -> float:
    if not (0 <= p <= 1 and 0 < df < math.inf):
        return math.nan
    if p in (0.0, 1.0):
        return math.inf if p == 1 else -math.inf
    q = min(p, 1 - p)  # exact for p >= 1/2
    if q == 0.5:
        return 0.0
    if q < 0.25:  # solve P(T > t) = q
        z = -_NORMAL.inv_cdf(q)
        cornish_fisher = z + (z ** 3 + z) / (4 * df) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * df * df)
        power_law = (df / 2 * math.log(df) - math.log(df) - _lbeta(df / 2, 0.5) - math.log(q)) / df  # log t as q -> 0
        u = _newton(lambda u: _t_step(u, df, 0, math.log(q)), max(math.log(cornish_fisher), power_law), increasing=False)
    else:  # solve P(0 < T < t) = 1/2 - q (exact): t near 0 keeps its relative precision
        c = 0.5 - q
        u = _newton(lambda u: _t_step(u, df, 1, math.log(c)), math.log(c) - _t_log_pdf(0.0, df), increasing=True)
    return math.copysign(math.exp(u), p - 0.5)


def _t_step(u: float, df: float, part: int, target: float) -> tuple[float, float]:
    """(log P - target, its slope in u) at t = e^u for P the tail (part 0) or the centre (part 1)."""
    t = math.exp(u)
    log_p = _t_parts(t, df)[part]
    slope = math.exp(u + _t_log_pdf(t, df) - log_p)
    return log_p - target, -slope if part == 0 else slope


# ---- chi-square: P(X < x) = P(df / 2, x / 2) ----------------------------------------------------------

def _chi2_ppf(p: float, df: float) -> float:
    if not (0 <= p <= 1 and 0 < df < math.inf):
        return math.nan
    if p in (0.0, 1.0):
        return math.inf if p == 1 else 0.0
    a = df / 2
    part, target = (0, math.log(p)) if p <= 0.5 else (1, math.log(1 - p))  # 1 - p exact
    z = _NORMAL.inv_cdf(p)
    wilson_hilferty = df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3
    below = math.log(2) + (math.log(p) + math.lgamma(a + 1)) / a  # P(a, x) < x^a / Gamma(a + 1): a lower bound
    start = max(math.log(wilson_hilferty) if wilson_hilferty > 0 else below, below) if p <= 0.5 else \
        math.log(max(wilson_hilferty, df))
    return math.exp(_newton(lambda u: _chi2_step(u, a, part, target), start, increasing=part == 0))


def _chi2_step(u: float, a: float, part: int, target: float) -> tuple[float, float]:
    """(log P - target, its slope in u) at 2x = e^u for P the lower tail (part 0) or the upper (part 1)."""
    log_x = u - math.log(2)
    log_p = _gamma_parts(a, log_x)[part]
    slope = math.exp(_log_gamma_prefactor(a, math.exp(log_x), log_x) - log_p)  # x * density / P
    return log_p - target, -slope if part == 1 else slope


def _newton(step: Callable[[float], tuple[float, float]], u: float, *, increasing: bool) -> float:
    """The root of a monotone concave function, given as ``step(u) -> (value, slope)``, from ``u``.

    After at most one step past the root, Newton's method on a concave function approaches it from
    one side; a step is kept under 50 (in log space: a factor e^50) so that a start far out on a
    flat part (a slope near 0) does not throw the next point beyond what the tails can say."""
    for _ in range(200):
        value, slope = step(u)
        if value == 0:
            return u
        toward = 1.0 if (value < 0) == increasing else -1.0
        move = toward * min(50.0, abs(value / slope)) if slope else toward * 50.0
        u += move
        if abs(move) < 1e-14 * max(1.0, abs(u)):
            return u
    return u


# ---- numpy arrays in, numpy arrays out --------------------------------------------------------------

def _each(fn: Callable[[float, float], float], x: ArrayLike, df: ArrayLike) -> Any:
    """``fn`` over numpy-broadcast ``x`` and ``df``, once per distinct pair: an array, or an np.float64
    for scalars (as scipy.special gives)."""
    x, df = np.broadcast_arrays(np.asarray(x, dtype=float), np.asarray(df, dtype=float))
    if x.ndim == 0:
        return np.float64(fn(float(x), float(df)))
    pairs = np.stack([x.ravel(), df.ravel()], axis=1)
    distinct, where = np.unique(pairs, axis=0, return_inverse=True)
    values = np.array([fn(v, d) for v, d in distinct.tolist()], dtype=float)
    return values[where.reshape(-1)].reshape(x.shape)


def t_sf(x: ArrayLike, df: ArrayLike) -> Any:
    """P(T > x) for Student's t with ``df`` degrees of freedom (0 < df < inf, not necessarily whole;
    NaN outside)."""
    return _each(_t_sf, x, df)


def t_ppf(p: ArrayLike, df: ArrayLike) -> Any:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom: the x with P(T <= x) = p."""
    return _each(_t_ppf, p, df)


def chi2_ppf(p: ArrayLike, df: ArrayLike) -> Any:
    """The ``p`` quantile of chi-square with ``df`` degrees of freedom: the x with P(X <= x) = p."""
    return _each(_chi2_ppf, p, df)
