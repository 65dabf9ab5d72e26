"""Calibration: simulated experiments with a known truth, run through the lab's own statistics.

Each trial is one paired experiment as the lab builds it: ``inputs`` inputs, ``repeats`` calls per
(input, variant). Input i has a base pass probability b_i ~ U(0.3, 0.7) and its own effect
e_i ~ N(difference, sd); A passes with probability clip(b_i + e_i / 2) and B with clip(b_i - e_i / 2),
so the per-input effect varies from input to input (sd) as it does for real prompts. Every trial's
per-input sums go through ``lab.stats.difference_verdicts`` (the function behind
``lab.stats.paired_difference``); the share of trials with a verdict is the false-verdict rate under the
null (difference 0) and the detection rate (power) under a planted difference, printed next to the
power ``lab.stats.plan`` predicted from a pilot of the same size (median over pilots). For contrast,
"t over pairs" is the old method: a t interval over (input, repeat) pairs as if they were independent.

Target: false verdicts <= 6% in every null cell (500+ trials each).

    python bench/calibration.py                 # 2000 trials per cell, prints the tables
    python bench/calibration.py --trials 500 --no-write
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, report, verdict  # noqa: E402

import pandas as pd  # noqa: E402
from scipy import stats as sps  # noqa: E402

from lab import stats  # noqa: E402

SDS = (0.0, 0.2, 0.4)
INPUTS = (5, 10, 30)
REPEATS = (1, 5, 20)
PLANTED = (0.1, 0.2, 0.3)


def simulate(rng: np.random.Generator, trials: int, inputs: int, repeats: int, difference: float,
             sd: float) -> tuple[np.ndarray, np.ndarray]:
    """(trials, inputs, repeats) arrays of 0/1 outcomes for A and B."""
    base = rng.uniform(0.3, 0.7, (trials, inputs, 1))
    effect = rng.normal(difference, sd, (trials, inputs, 1))
    pa, pb = np.clip(base + effect / 2, 0, 1), np.clip(base - effect / 2, 0, 1)
    a = rng.random((trials, inputs, repeats)) < pa
    b = rng.random((trials, inputs, repeats)) < pb
    return a.astype(float), b.astype(float)


def lab_verdicts(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Share of trials where the lab's paired verdict is a direction (A or B better)."""
    d = a - b
    sums = d.sum(-1)
    sizes = np.full(sums.shape, d.shape[-1], dtype=float)
    sumsq = ((d - d.mean(-1, keepdims=True)) ** 2).sum(-1)
    res = stats.difference_verdicts(sums, sizes, sumsq)
    return np.isin(res["direction"], (-1, 1))


def naive_verdicts(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The old method: t interval over (input, repeat) pairs, as if every pair were independent."""
    d = (a - b).reshape(a.shape[0], -1)
    n = d.shape[-1]
    if n < 2:
        return np.zeros(d.shape[0], dtype=bool)
    mean, sd = d.mean(-1), d.std(-1, ddof=1)
    half = sps.t.ppf(0.975, n - 1) * sd / np.sqrt(n)
    return np.where(sd > 0, np.abs(mean) > half, mean != 0)


def pilot_frame(a: np.ndarray, b: np.ndarray) -> pd.DataFrame:
    """One simulated experiment as run rows (what lab.stats.plan reads)."""
    inputs, repeats = a.shape
    rows = [{"variant": v, "input_id": f"i{i}", "repeat": r, "model": "sim", "passed": float(x[i, r]),
             "cost_usd": 0.0001}
            for v, x in (("A", a), ("B", b)) for i in range(inputs) for r in range(repeats)]
    return pd.DataFrame(rows)


def predicted(rng: np.random.Generator, inputs: int, repeats: int, difference: float, sd: float,
              pilots: int) -> float:
    """Median power lab.stats.plan predicts for this design, from pilots of the same size."""
    a, b = simulate(rng, pilots, inputs, repeats, difference, sd)
    got = []
    for t in range(pilots):
        p = stats.plan(pilot_frame(a[t], b[t]), "A", "B", difference=difference, repeat_choices=(repeats,))
        got.append(p.power_at(inputs, repeats))
    return float(np.median(got))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=2000, help="simulated experiments per cell (default 2000)")
    ap.add_argument("--pilots", type=int, default=15, help="pilots per planted cell for the predicted power")
    ap.add_argument("--seed", type=int, default=20240917)
    ap.add_argument("--no-write", action="store_true", help="print only; do not update bench/results.md")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()

    lines = [f"Machine: {machine()}.", "",
             f"{args.trials} simulated paired experiments per cell through `lab.stats.difference_verdicts` "
             "(the function behind `lab.stats.paired_difference`); per-input effect ~ N(difference, sd) on the pass "
             "probability. Null: no average difference, share of trials with a verdict (target <= 6%). "
             "'t over pairs' is the old method (pairs as independent evidence), for contrast.", "",
             "| per-input effect sd | inputs | repeats | lab: false verdicts | t over pairs (old) | target <= 6% |",
             "| ---: | ---: | ---: | ---: | ---: | --- |"]
    worst = 0.0
    for sd in SDS:
        for n in INPUTS:
            for k in REPEATS:
                a, b = simulate(rng, args.trials, n, k, 0.0, sd)
                lab_rate = float(lab_verdicts(a, b).mean())
                old_rate = float(naive_verdicts(a, b).mean())
                worst = max(worst, lab_rate)
                lines.append(f"| {sd:g} | {n} | {k} | {lab_rate:.1%} | {old_rate:.1%} | {verdict(lab_rate <= 0.06)} |")
    lines += ["", f"Worst null cell: {worst:.1%} (target <= 6%: {verdict(worst <= 0.06)}). With 5 inputs the lab "
              "answers 'too few inputs to tell' (an exact sign-flip test cannot reach 5% on 5 inputs).", "",
              "Planted differences (per-input effect sd 0.2): share detected in the right direction, next to the "
              f"power `lab.stats.plan` predicted from a pilot of the same size (median of {args.pilots} pilots).", "",
              "| planted difference | inputs | repeats | detected | predicted by plan | wrong direction |",
              "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    for diff in PLANTED:
        for n in (10, 30):
            for k in REPEATS:
                a, b = simulate(rng, args.trials, n, k, diff, 0.2)
                d = a - b
                res = stats.difference_verdicts(d.sum(-1), np.full(d.shape[:2], float(k)),
                                                ((d - d.mean(-1, keepdims=True)) ** 2).sum(-1))
                right = float((res["direction"] == 1).mean())
                wrong = float((res["direction"] == -1).mean())
                pred = predicted(rng, n, k, diff, 0.2, args.pilots)
                lines.append(f"| {diff:g} | {n} | {k} | {right:.1%} | {pred:.1%} | {wrong:.1%} |")
    lines += ["", f"Run time {time.perf_counter() - t0:.0f} s.",
              f"Reproduce: `python bench/calibration.py --trials {args.trials} --seed {args.seed}`"]
    report("Calibration of verdicts", lines, write=not args.no_write)


if __name__ == "__main__":
    main()
