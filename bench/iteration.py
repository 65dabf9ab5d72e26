"""Iteration: how often does the version that looks best after K edits look like an improvement
when none of them is one? A simulation through the lab's own readings, no model calls.

Each trial is a user iterating on a prompt: ``dev`` inputs (20) for the edits and ``held_out``
inputs (20) kept apart, 3 repeats a call. Input i has a baseline pass probability b_i ~ U(0.2, 0.7).
Each of K edited versions passes input i with probability p_ij ~ Beta(c b_i, c (1 - b_i)) (c = 10):
draws around the baseline's, with the same mean, so no version is truly better. The user keeps the
version with the highest pass rate on dev and reads it against the baseline three ways:

- naive: ``lab.stats.paired_difference`` on dev, as if the comparison had been planned (today's lab);
- selection-aware: ``lab.selection.selection_aware`` on dev, the same comparison read as the best
  of K (what the lab's findings now give when the log shows K versions tried on these inputs);
- confirmed: ``lab.stats.paired_difference`` on the held-out inputs, fresh calls of the chosen
  version and the baseline (``lab.confirm``).

A false improvement is a reading that says the chosen version is better. Power: one of the K
versions is truly better by 0.15 (its p_ij are drawn around b_i + 0.15); a hit is a reading that
says the chosen version is better when the chosen one is the truly better one.

Targets (K = 20, 20 dev, 20 held-out, 3 repeats): confirmed <= 6%, selection-aware <= 6%.

    python bench/iteration.py                      # 1000 trials at K = 20, 400 at the other K
    python bench/iteration.py --trials 200 --no-write
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, verdict, write_section

from lab import selection, stats

KS = (5, 10, 20, 50)
DEV, HELD_OUT, REPEATS = 20, 20, 3
CONCENTRATION = 10.0
LIFT = 0.15
TARGET = 0.06


def _frame(a: np.ndarray, b: np.ndarray, names: tuple[str, str]) -> pd.DataFrame:
    """Run rows for two variants' 0/1 outcomes, (inputs, repeats) each, paired on (input, repeat)."""
    inputs, repeats = a.shape
    ids = np.repeat([f"i{i}" for i in range(inputs)], repeats)
    rep = np.tile(np.arange(repeats), inputs)
    return pd.DataFrame({"variant": np.repeat(names, inputs * repeats), "input_id": np.tile(ids, 2),
                         "repeat": np.tile(rep, 2), "model": "sim",
                         "passed": np.concatenate([a.ravel(), b.ravel()])})


def _better(df: pd.DataFrame, **kw: object) -> bool:
    return stats.paired_difference(df, "chosen", "baseline", **kw).iloc[0]["verdict"] == "A better"


def trial(rng: np.random.Generator, k: int, lift: float) -> tuple[bool, bool, bool, bool]:
    """(naive, selection-aware, confirmed, chosen is the truly better version) for one user."""
    base = rng.uniform(0.2, 0.7, DEV + HELD_OUT)
    means = np.tile(base, (k, 1))
    good = int(rng.integers(k)) if lift else -1
    if lift:
        means[good] = np.clip(base + lift, 0.01, 0.99)
    p = rng.beta(CONCENTRATION * means, CONCENTRATION * (1 - means))  # (k, inputs): each version's own
    runs = rng.random((k + 1, DEV + HELD_OUT, REPEATS)) < np.concatenate([base[None], p])[:, :, None]
    runs = runs.astype(float)
    dev, held = runs[:, :DEV], runs[:, DEV:]
    best = 1 + int(np.argmax(dev[1:].mean(axis=(1, 2))))
    on_dev = _frame(dev[best], dev[0], ("chosen", "baseline"))
    naive = _better(on_dev)
    aware = selection.selection_aware(on_dev, "chosen", "baseline", k)["verdict"] == "A better"
    confirmed = _better(_frame(held[best], held[0], ("chosen", "baseline")))
    return naive, aware, confirmed, best - 1 == good


def cell(rng: np.random.Generator, k: int, trials: int, lift: float) -> dict[str, float]:
    out = np.array([trial(rng, k, lift) for _ in range(trials)])
    if lift:  # hits: the reading says better and the chosen version is the truly better one
        out = out[:, :3] & out[:, 3:4]
    return {"naive": out[:, 0].mean(), "aware": out[:, 1].mean(), "confirmed": out[:, 2].mean(), "trials": trials}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=1000, help="trials at K = 20 (other K: 40%% of this)")
    ap.add_argument("--seed", type=int, default=19)
    ap.add_argument("--no-write", action="store_true", help="print only; leave bench/results.md alone")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    rows = []
    for k in KS:
        n = args.trials if k == 20 else max(50, int(args.trials * 0.4))
        rows.append((k, cell(rng, k, n, 0.0), cell(rng, k, n, LIFT)))
    wall = time.perf_counter() - t0
    null20 = next(r[1] for r in rows if r[0] == 20)
    ok = null20["confirmed"] <= TARGET and null20["aware"] <= TARGET
    lines = [f"{DEV} dev inputs, {HELD_OUT} held-out, {REPEATS} repeats; versions' per-input pass probabilities "
             f"~ Beta around the baseline's (c = {CONCENTRATION:g}); {machine()}; {wall:.0f} s", "",
             "| K versions | trials | false improvements: naive | selection-aware | confirmed | "
             f"power at +{LIFT}: naive | selection-aware | confirmed |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for k, null, power in rows:
        lines.append(f"| {k} | {null['trials']} | {null['naive']:.1%} | {null['aware']:.1%} | {null['confirmed']:.1%} "
                     f"| {power['naive']:.1%} | {power['aware']:.1%} | {power['confirmed']:.1%} |")
    lines += ["", f"Targets at K = 20: confirmed <= {TARGET:.0%}, selection-aware <= {TARGET:.0%}: {verdict(ok)}. "
              "Power counts a reading that calls the chosen version better when it is the truly better one.", "",
              f"false improvements: naive {null20['naive']:.0%}, selection-aware {null20['aware']:.0%}, "
              f"confirmed {null20['confirmed']:.0%}"]
    if not args.no_write:
        write_section("Iteration: the best of K versions", lines)
    print("\n".join(lines))  # its last line is the summary line, last on stdout too
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
