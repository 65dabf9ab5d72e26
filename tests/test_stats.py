"""Statistics: Wilson and bootstrap intervals, paired differences with a verdict, the power helper."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import lab
from lab.stats import mean_ci, proportion_ci
from tests import scripted

scripted.SCRIPTS["coin"] = lambda m, p: ["positive", "negative"][p.get("seed", 0) % 2]


def frame(values_a, values_b, tags=None):
    rows = []
    for i, (a, b) in enumerate(zip(values_a, values_b)):
        t = (tags or {}).get(i, ["normal"])
        rows.append({"variant": "A", "input_id": f"i{i % 5}", "repeat": i // 5, "model": "m", "passed": a,
                     "input_tags": t, "outcome": "answered", "cost_usd": 0.001})
        rows.append({"variant": "B", "input_id": f"i{i % 5}", "repeat": i // 5, "model": "m", "passed": b,
                     "input_tags": t, "outcome": "escaped" if b == 0 else "answered", "cost_usd": 0.001})
    return pd.DataFrame(rows)


def test_wilson_interval_matches_the_textbook_and_handles_edges():
    low, high = proportion_ci(7, 50)
    assert low == pytest.approx(0.0695, abs=1e-3) and high == pytest.approx(0.2618, abs=1e-3)
    assert proportion_ci(0, 10)[0] == 0 and 0 < proportion_ci(0, 10)[1] < 0.35
    assert proportion_ci(10, 10)[1] == pytest.approx(1) and proportion_ci(10, 10)[0] > 0.65
    assert all(math.isnan(x) for x in proportion_ci(0, 0))


def test_bootstrap_mean_interval_contains_the_mean_and_is_reproducible():
    x = np.random.default_rng(1).normal(3, 1, 40)
    low, high = mean_ci(x, seed=3)
    assert low < x.mean() < high and (low, high) == mean_ci(x, seed=3)
    assert mean_ci([2, 2, 2]) == (2, 2)


def test_rates_per_variant_and_tag_are_sane():
    df = frame([1, 1, 0, 1, 1, 0, 1, 1, 1, 1], [0] * 10, tags={0: ["edge"], 1: ["edge", "unanswerable"]})
    r = lab.rates(df)
    assert r.loc["A", "n"] == 10 and r.loc["A", "k"] == 8 and r.loc["B", "rate"] == 0
    assert ((0 <= r["low"]) & (r["low"] <= r["rate"]) & (r["rate"] <= r["high"]) & (r["high"] <= 1)).all()
    by_tag = lab.rates(df, split_by_tag=True)
    assert by_tag.loc[("A", "edge"), "n"] == 2 and by_tag.loc[("A", "all"), "n"] == 10
    esc = lab.rates(df, value="escaped")
    assert esc.loc["B", "rate"] == 1 and esc.loc["A", "rate"] == 0
    with pytest.raises(lab.ParameterError, match="with_grades"):
        lab.rates(df.drop(columns="passed"), value="passed")


def test_paired_difference_verdicts():
    same = lab.paired_difference(frame([1, 0] * 10, [1, 0] * 10), "A", "B")
    assert same["verdict"].iloc[0] == "no detectable difference" and same["pairs"].iloc[0] == 20
    planted = lab.paired_difference(frame([1] * 20, [0] * 20), "A", "B")
    assert planted["verdict"].iloc[0] == "A better" and "A better than B" in planted["reading"].iloc[0]
    worse = lab.paired_difference(frame([0] * 20, [1] * 19 + [0]), "A", "B", method="bootstrap")
    assert worse["verdict"].iloc[0] == "B better" and worse["low"].iloc[0] <= worse["difference"].iloc[0] <= worse["high"].iloc[0]
    esc = lab.paired_difference(frame([1] * 20, [0] * 20), "A", "B", value="escaped", higher_is_better=False)
    assert esc["verdict"].iloc[0] == "A better"  # A escapes less
    split = lab.paired_difference(frame([1] * 20, [0] * 20, tags={0: ["edge"]}), "A", "B", split_by_tag=True)
    assert set(split.index) == {"all", "edge", "normal"} and split.loc["edge", "pairs"] == 1
    with pytest.raises(lab.ParameterError, match="no rows with variant 'C'"):
        lab.paired_difference(frame([1], [1]), "A", "C")


def test_means_bootstrap_per_variant():
    df = frame([1] * 10, [0] * 10).assign(score=lambda d: np.where(d["variant"] == "A", 4.0, 2.0))
    m = lab.means(df, value="score")
    assert m.loc["A", "mean"] == 4 and m.loc["A", "low"] == 4


def test_repeats_needed_from_a_pilot_with_cost_and_batch_price():
    pilot = frame([1, 0, 1, 1, 0, 1, 0, 1, 1, 0], [0, 0, 1, 0, 0, 1, 0, 0, 1, 0])
    est = lab.repeats_needed(pilot, "A", "B", difference=0.2)
    assert est.pairs_needed > 20 and est.inputs == 5
    assert est.repeats_needed == math.ceil(est.pairs_needed / 5)
    assert est.calls_needed == 2 * est.repeats_needed * 5
    assert est.cost_usd == pytest.approx(0.001 * est.calls_needed) and est.batch_cost_usd == pytest.approx(est.cost_usd / 2)
    assert "batch API" in str(est)
    smaller = lab.repeats_needed(pilot, "A", "B", difference=0.4)
    assert smaller.pairs_needed < est.pairs_needed
    flat = lab.repeats_needed(frame([1] * 10, [1] * 10), "A", "B", difference=0.1)
    assert flat.pairs_needed > 10 and "never differed" in flat.note
    with pytest.raises(lab.ParameterError, match="difference"):
        lab.repeats_needed(pilot, "A", "B", difference=0)


def test_aa_on_a_seeded_coin_model_is_mostly_no_difference(run_log, write):
    """Two identical variants on a random (seeded) model: no detectable difference in most runs."""
    p = write("aa.yaml", "task: aa\nvariants:\n  a:\n    user: '{{ text }}'\n  b:\n    user: '{{ text }}'\n")
    inputs = [{"id": f"r{i}", "text": "x", "expected": "positive"} for i in range(6)]
    verdicts = []
    for seed in range(20):
        runs = lab.experiment(p, inputs=inputs, model="scripted:seeded", repeats=2, seed=seed, log=run_log).run()
        # the same seed per (input, repeat) goes to both variants, so the two must agree exactly
        lab.grade(runs, lab.match(), log=run_log)
        df = lab.with_grades(runs.df, run_log.grades(runs.experiment_id))
        verdicts.append(lab.paired_difference(df, "a", "b")["verdict"].iloc[0])
    assert verdicts.count("no detectable difference") >= 18


def test_a_difference_in_escapes_is_reported_as_higher_not_better_unless_told_which_is_better():
    esc = lab.paired_difference(frame([1] * 20, [0] * 20), "A", "B", value="escaped")  # B escapes every time
    assert esc["verdict"].iloc[0] == "B higher"
    assert esc["reading"].iloc[0].startswith("escaped is higher for B than for A")
