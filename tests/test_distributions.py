"""The t and chi-square tails and quantiles behind every interval and p-value (lab.distributions) agree
with scipy.special, which the lab used until `python -m lab show` stopped importing it."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special

from lab.distributions import chi2_ppf, t_ppf, t_sf

DFS = np.unique(np.concatenate([[1, 1.5, 2, 2.5, 3, 4, 5, 7.3, 10, 11, 29, 29.5, 30, 31, 99.5, 1000, 49_999],
                                np.geomspace(1, 1e6, 19)]))
PS = np.array([1e-12, 1e-10, 1e-8, 1e-6, 1e-4, 1e-3, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.45,
               0.499, 0.5, 0.501, 0.55, 0.6, 0.75, 0.8, 0.85, 0.9, 0.95, 0.975, 0.99, 0.999, 1 - 1e-6, 1 - 1e-9,
               1 - 1e-12])
XS = np.concatenate([[0.0], np.geomspace(1e-3, 1e3, 49), [1e5, 1e10, 1e100, 1e200]])
#: scipy.special agrees to about 1e-11 (the differences are scipy's: against 40-digit mpmath the
#: functions here are within 7e-13); near the centre scipy's stdtr and stdtrit lose digits (stdtrit(4,
#: 0.5 + 1e-9) is 0), so there the closed forms for 1 and 2 degrees of freedom are the reference
RTOL = 1e-10


def test_t_quantiles_agree_with_scipy_from_one_to_a_million_degrees_of_freedom():
    p, df = np.meshgrid(PS, DFS)
    np.testing.assert_allclose(t_ppf(p, df), special.stdtrit(df, p), rtol=RTOL, atol=0)


def test_t_upper_tails_agree_with_scipy_far_into_the_tails():
    x, df = np.meshgrid(np.concatenate([-XS[::-1], XS]), DFS)
    ref = special.stdtr(df, -x)
    told = (ref > 1e-300) & ((np.abs(x) >= 1e-2) | (df > 1))  # scipy's own tails, where it has their digits
    np.testing.assert_allclose(t_sf(x, df)[told], ref[told], rtol=RTOL, atol=0)
    assert t_sf(1e200, 1.0) == pytest.approx(1 / (math.pi * 1e200), rel=1e-12)  # the Cauchy tail, not 0


def test_chi_square_quantiles_agree_with_scipy():
    p, df = np.meshgrid(PS, DFS)
    np.testing.assert_allclose(chi2_ppf(p, df), 2 * special.gammaincinv(df / 2, p), rtol=RTOL, atol=0)
    # as lab.stats used it: the lower 15% and 20% points, through the upper tail scipy takes
    for q in (0.15, 0.2):
        np.testing.assert_allclose(chi2_ppf(q, DFS), special.chdtri(DFS, 1 - q), rtol=RTOL, atol=0)


@pytest.mark.parametrize("p", [0.5 - 1e-9, 0.5 - 1e-12, 0.5 + 1e-15, 0.5 + 1e-12, 0.5 + 1e-6, 0.7])
def test_quantiles_near_the_centre_keep_their_relative_precision(p):
    assert t_ppf(p, 1.0) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-12)
    assert t_ppf(p, 2.0) == pytest.approx((2 * p - 1) / math.sqrt(2 * p * (1 - p)), rel=1e-12)
    x = abs(float(t_ppf(p, 4.0)))
    assert t_sf(-x, 4.0) == pytest.approx(max(p, 1 - p), rel=1e-15)


@pytest.mark.parametrize("x", [1e-12, 1e-8, 1e-3, 0.5, 3.0, 1e6])
def test_tails_of_one_and_two_degrees_of_freedom_match_their_closed_forms(x):
    assert t_sf(x, 1.0) == pytest.approx(math.atan2(1, x) / math.pi, rel=1e-13)
    assert t_sf(-x, 1.0) == pytest.approx(1 - math.atan2(1, x) / math.pi, rel=1e-15)
    assert t_sf(x, 2.0) == pytest.approx(0.5 - x / (2 * math.sqrt(2 + x * x)) if x < 1 else
                                         1 / (math.sqrt(2 + x * x) * (math.sqrt(2 + x * x) + x)), rel=1e-13)


@pytest.mark.parametrize("df", [1.0, 2.5, 29.0, 30.0, 1e3, 1e6])
@pytest.mark.parametrize("p", [1e-12, 0.025, 0.3, 0.975])
def test_a_quantile_is_where_the_tail_has_that_probability(df, p):
    assert t_sf(-t_ppf(p, df), df) == pytest.approx(p, rel=1e-12)


def test_edges_and_arrays():
    assert t_ppf(0.5, 7.0) == 0.0 and t_sf(0.0, 7.0) == 0.5
    assert t_ppf(0.0, 3.0) == -math.inf and t_ppf(1.0, 3.0) == math.inf
    assert t_sf(math.inf, 3.0) == 0.0 and t_sf(-math.inf, 3.0) == 1.0
    assert chi2_ppf(0.0, 3.0) == 0.0 and chi2_ppf(1.0, 3.0) == math.inf
    for value in (t_ppf(1.5, 3.0), t_ppf(0.3, 0.0), t_sf(math.nan, 3.0), t_sf(1.0, -1.0), chi2_ppf(-0.1, 2.0),
                  chi2_ppf(0.5, math.nan), t_ppf(0.9, math.inf)):
        assert math.isnan(value)
    q = t_ppf(0.975, np.array([[1.0, 10.0], [10.0, 1e6]]))  # broadcast; equal values computed once
    assert q.shape == (2, 2) and q[0, 1] == q[1, 0] == pytest.approx(2.2281388519862747, rel=1e-14)
    assert isinstance(t_ppf(0.975, 10.0), float) and float(chi2_ppf(0.5, 2.0)) == pytest.approx(2 * math.log(2))
