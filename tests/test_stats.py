"""Statistics: Wilson and bootstrap intervals, paired differences with a verdict, the power helper."""

from __future__ import annotations

import math
import random

import numpy as np
import pandas as pd
import pytest

import lab
from lab import stats
from lab.stats import mean_ci, proportion_ci
from tests import scripted

scripted.SCRIPTS["coin"] = lambda m, p: ["positive", "negative"][p.get("seed", 0) % 2]


def frame(values_a, values_b, tags=None, n_inputs=5):
    rows = []
    for i, (a, b) in enumerate(zip(values_a, values_b)):
        t = (tags or {}).get(i, ["normal"])
        rows.append({"variant": "A", "input_id": f"i{i % n_inputs}", "repeat": i // n_inputs, "model": "m", "passed": a,
                     "input_tags": t, "outcome": "answered", "cost_usd": 0.001})
        rows.append({"variant": "B", "input_id": f"i{i % n_inputs}", "repeat": i // n_inputs, "model": "m", "passed": b,
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
    df = frame([1, 1, 0, 1, 1, 0, 1, 1, 1, 1] * 2, [0] * 20, tags={0: ["edge"], 1: ["edge", "unanswerable"]},
               n_inputs=10)
    r = lab.stats.rates(df)
    assert r.loc["A", "n"] == 20 and r.loc["A", "k"] == 16 and r.loc["B", "rate"] == 0
    assert ((0 <= r["low"]) & (r["low"] <= r["rate"]) & (r["rate"] <= r["high"]) & (r["high"] <= 1)).all()
    by_tag = lab.stats.rates(df, split_by_tag=True)
    assert by_tag.loc[("A", "edge"), "n"] == 2 and by_tag.loc[("A", "all"), "n"] == 20
    assert math.isnan(by_tag.loc[("A", "edge"), "low"])  # 1 input: counts, no interval
    esc = lab.stats.rates(df, value="escaped")
    assert esc.loc["B", "rate"] == 1 and esc.loc["A", "rate"] == 0
    with pytest.raises(lab.ParameterError, match="with_grades"):
        lab.stats.rates(df.drop(columns="passed"), value="passed")


def test_paired_difference_verdicts():
    same = lab.stats.paired_difference(frame([1, 0] * 20, [1, 0] * 20, n_inputs=10), "A", "B")
    assert same["verdict"].iloc[0] == "no detectable difference" and same["pairs"].iloc[0] == 40
    assert same["inputs"].iloc[0] == 10
    planted = lab.stats.paired_difference(frame([1] * 20, [0] * 20, n_inputs=10), "A", "B")
    assert planted["verdict"].iloc[0] == "A better" and "A better than B over 10 inputs" in planted["reading"].iloc[0]
    worse = lab.stats.paired_difference(frame([0] * 20, [1] * 19 + [0], n_inputs=10), "A", "B", method="bootstrap")
    assert worse["verdict"].iloc[0] == "B better" and worse["low"].iloc[0] <= worse["difference"].iloc[0] <= worse["high"].iloc[0]
    esc = lab.stats.paired_difference(frame([1] * 20, [0] * 20, n_inputs=10), "A", "B", value="escaped", higher_is_better=False)
    assert esc["verdict"].iloc[0] == "A better"  # A escapes less
    split = lab.stats.paired_difference(frame([1] * 20, [0] * 20, n_inputs=10, tags={0: ["edge"]}), "A", "B", split_by_tag=True)
    assert set(split.index) == {"all", "edge", "normal"} and split.loc["edge", "pairs"] == 1
    assert split.loc["edge", "verdict"] == "too few inputs to tell"
    with pytest.raises(lab.ParameterError, match="no rows with variant 'C'"):
        lab.stats.paired_difference(frame([1], [1]), "A", "C")


def test_the_sign_is_a_minus_b_as_named():
    df = frame([1] * 20, [0] * 20, n_inputs=10)
    assert lab.stats.paired_difference(df, "A", "B")["difference"].iloc[0] == 1
    assert lab.stats.paired_difference(df, "B", "A")["difference"].iloc[0] == -1


def test_two_pairs_that_both_go_one_nil_never_give_a_verdict():
    df = frame([1, 1], [0, 0], n_inputs=2)
    for population in ("inputs", "these"):
        for method in ("t", "bootstrap"):
            row = lab.stats.paired_difference(df, "A", "B", population=population, method=method).iloc[0]
            assert row["verdict"] in ("too few inputs to tell", "no detectable difference"), (population, method)
            assert row["low"] < 0 < row["high"] or math.isnan(row["low"])
    row = lab.stats.paired_difference(df, "A", "B").iloc[0]
    assert row["reading"] == ("too few inputs to tell: passed A - B = +1.000 over 2 inputs (2 pairs); "
                              "a verdict and an interval need 6 inputs")


def test_five_inputs_are_too_few_even_when_every_one_agrees():
    row = lab.stats.paired_difference(frame([1] * 25, [0] * 25, n_inputs=5), "A", "B").iloc[0]
    assert row["verdict"] == "too few inputs to tell" and row["inputs"] == 5
    these = lab.stats.paired_difference(frame([1] * 25, [0] * 25, n_inputs=5), "A", "B", population="these").iloc[0]
    assert these["verdict"] == "A better" and "on these 5 inputs" in these["reading"]


def test_every_interval_of_a_rate_difference_lies_within_minus_one_and_one():
    rng = np.random.default_rng(7)
    for trial in range(60):
        n_inputs = int(rng.integers(1, 12))
        k = int(rng.integers(1, 6))
        pa, pb = rng.random(n_inputs), rng.random(n_inputs)
        a = (rng.random((k, n_inputs)) < pa).astype(int).ravel()
        b = (rng.random((k, n_inputs)) < pb).astype(int).ravel()
        if trial % 10 == 0:
            a, b = np.ones_like(a), np.zeros_like(b)  # the extreme that used to give [1, 1]
        df = frame(a, b, n_inputs=n_inputs)
        for population in ("inputs", "these"):
            res = lab.stats.paired_difference(df, "A", "B", population=population, split_by_tag=True)
            finite = res.dropna(subset=["low", "high"])
            assert ((finite["low"] >= -1) & (finite["high"] <= 1) & (finite["low"] <= finite["high"])).all()
        r = lab.stats.rates(df).dropna(subset=["low"])  # under 6 inputs: counts, no interval over inputs
        assert ((r["low"] >= 0) & (r["high"] <= 1)).all() and (len(r) or n_inputs < lab.stats.MIN_INPUTS)


def test_repeats_do_not_count_as_independent_evidence():
    """Ten inputs, five where A wins and five where B wins, each repeated 20 times: the old
    pair-level t interval would call this a clear win for whoever won by a hair; inputs disagree."""
    a = [1] * 60 + [0] * 40 + [1] * 100
    b = [0] * 60 + [1] * 40 + [1] * 100
    rows = []
    for j, (x, y) in enumerate(zip(a, b)):
        inp = f"i{j // 20}"
        rows += [{"variant": "A", "input_id": inp, "repeat": j % 20, "model": "m", "passed": x, "input_tags": ["normal"],
                  "outcome": "answered"},
                 {"variant": "B", "input_id": inp, "repeat": j % 20, "model": "m", "passed": y, "input_tags": ["normal"],
                  "outcome": "answered"}]
    df = pd.DataFrame(rows)
    over_inputs = lab.stats.paired_difference(df, "A", "B").iloc[0]
    assert over_inputs["verdict"] == "no detectable difference" and over_inputs["inputs"] == 10
    these = lab.stats.paired_difference(df, "A", "B", population="these").iloc[0]
    assert these["high"] - these["low"] < over_inputs["high"] - over_inputs["low"]


def test_clustered_null_gives_a_verdict_about_five_percent_of_the_time():
    """The case the old A/A test missed: no average difference, but the effect differs from input
    to input (sd 0.4), 10 inputs x 20 repeats. Pairs as independent evidence said 'better' in ~40%."""
    rng = np.random.default_rng(2024)
    trials, n, k = 3000, 10, 20
    base = rng.uniform(0.3, 0.7, (trials, n, 1))
    effect = rng.normal(0.0, 0.4, (trials, n, 1))
    a = (rng.random((trials, n, k)) < np.clip(base + effect / 2, 0, 1)).astype(float)
    b = (rng.random((trials, n, k)) < np.clip(base - effect / 2, 0, 1)).astype(float)
    d = a - b
    res = stats.difference_verdicts(d.sum(-1), np.full((trials, n), float(k)),
                                    ((d - d.mean(-1, keepdims=True)) ** 2).sum(-1))
    share = float(np.isin(res["direction"], (-1, 1)).mean())
    assert 0.02 <= share <= 0.065, share
    # one of those trials as run rows through lab.stats.paired_difference: the same verdict and interval
    t = int(np.flatnonzero(res["direction"] != 0)[0])
    rows = [{"variant": v, "input_id": f"i{i}", "repeat": r, "model": "m", "passed": x[t, i, r],
             "input_tags": ["normal"], "outcome": "answered"} for v, x in (("A", a), ("B", b))
            for i in range(n) for r in range(k)]
    row = lab.stats.paired_difference(pd.DataFrame(rows), "A", "B").iloc[0]
    assert row["low"] == pytest.approx(res["low"][t]) and row["high"] == pytest.approx(res["high"][t])
    assert row["verdict"] == ("A better" if res["direction"][t] > 0 else "B better")


def test_sign_flip_test_matches_scipy_permutation_test():
    from scipy.stats import permutation_test

    x = np.array([0.5, -0.2, 0.3, 0.1, 0.4, 0.6, -0.1, 0.2])
    ref = permutation_test((x,), lambda s, axis=-1: np.abs(s.sum(axis)), permutation_type="samples",
                           vectorized=True, alternative="greater", n_resamples=10_000).pvalue
    assert stats.sign_flip_p(x, mid_p=False)[0] == pytest.approx(ref)
    # the lab's verdicts count patterns that tie with the observed one half (mid-p)
    assert stats.sign_flip_p(x)[0] < ref
    ternary = np.array([1.0, 1, 1, 1, 1, 0, 0, -1])  # one repeat: many ties
    assert stats.sign_flip_p(ternary)[0] < stats.sign_flip_p(ternary, mid_p=False)[0]


def test_means_per_variant_with_an_interval_over_inputs():
    df = frame([1] * 12, [0] * 12, n_inputs=6).assign(score=lambda d: np.where(d["variant"] == "A", 4.0, 2.0))
    m = lab.stats.means(df, value="score")
    assert m.loc["A", "mean"] == 4 and m.loc["A", "low"] == 4 and m.loc["A", "inputs"] == 6
    noisy = df.assign(score=np.random.default_rng(0).normal(3, 1, len(df)))
    bounded = lab.stats.means(noisy, value="score", bounds=(1, 5))
    assert ((bounded["low"] >= 1) & (bounded["high"] <= 5)).all()


def _pilot(effects, repeats=10, seed=0, base=0.5):
    """Run rows for A and B: input i passes with probability base +- effects[i] / 2."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, e in enumerate(effects):
        for r in range(repeats):
            for v, p in (("A", base + e / 2), ("B", base - e / 2)):
                rows.append({"variant": v, "input_id": f"i{i}", "repeat": r, "model": "m",
                             "passed": float(rng.random() < p), "input_tags": ["normal"], "outcome": "answered",
                             "cost_usd": 0.001})
    return pd.DataFrame(rows)


def test_plan_says_add_inputs_when_the_spread_between_inputs_dominates():
    pilot = _pilot([0.8, -0.8] * 4, repeats=20)  # inputs disagree strongly; repeats are nearly noise-free
    p = stats.plan(pilot, "A", "B", difference=0.1)
    assert p.between_var > p.within_var
    assert p.repeats_for_pilot_inputs is None and p.advice.startswith("add inputs: the spread between inputs dominates")
    assert p.recommended.inputs > 8 and "add inputs" in str(p)
    # more repeats barely help, more inputs do
    assert p.power_at(8, 1000) < 0.2 < p.power_at(p.recommended.inputs, p.recommended.repeats)


def test_plan_answers_in_inputs_and_repeats_with_cost_and_what_the_pilot_can_detect():
    pilot = _pilot([0.0] * 12, repeats=3)  # no spread between inputs: repeats are as good as inputs
    p = stats.plan(pilot, "A", "B", difference=0.2)
    assert p.pilot_inputs == 12 and p.pilot_repeats == 3
    assert p.repeats_for_pilot_inputs is not None and p.power_at(12, p.repeats_for_pilot_inputs) >= 0.8
    assert p.recommended.calls == 2 * p.recommended.inputs * p.recommended.repeats
    assert p.cost_usd == pytest.approx(0.001 * p.calls_needed) and p.batch_cost_usd == pytest.approx(p.cost_usd / 2)
    assert 0 < p.detectable_now < 1 and "can detect a difference of about" in str(p)
    assert stats.plan(pilot, "A", "B", difference=0.4).recommended.calls < p.recommended.calls
    table = p.table()
    assert list(table.index) == sorted(table.index) and (table["power"] >= 0.8).all()
    with pytest.raises(lab.ParameterError, match="difference"):
        stats.plan(pilot, "A", "B", difference=0)


def test_aa_where_each_input_favours_one_framing_but_neither_wins_on_average(run_log, write):
    """The clustered null on a (scripted) model: framing a passes input i with probability x_i and
    framing b with 1 - x_i, where each experiment draws its 10 inputs from a population whose x
    averages 0.5: neither framing is better on average, while every input favours one of them.
    Pairs taken as independent evidence give a verdict often here; inference over inputs must
    give one rarely."""
    def biased(m, p):
        text = m[-1]["content"]
        x = int(text.split()[-1]) / 10
        q = x if text.startswith("Label ") else 1 - x
        return "positive" if random.Random(f"{p.get('seed')}|{text}").random() < q else "negative"

    scripted.SCRIPTS["biased_coin"] = biased
    p = write("aa.yaml", "task: aa\nvariants:\n  a:\n    user: 'Label {{ text }}'\n  b:\n    user: 'Label:  {{ text }}'\n")
    verdicts, naive = [], []
    for seed in range(12):
        xs = [random.Random(seed * 100 + i).randint(1, 9) for i in range(10)]  # a fresh sample of inputs
        inputs = [{"id": f"r{i}", "text": f"item {x}", "expected": "positive"} for i, x in enumerate(xs)]
        runs = lab.experiment(p, inputs=inputs, model="scripted:biased_coin", repeats=4, seed=seed, log=run_log).run()
        lab.grade(runs, lab.graders.match(), log=run_log)
        df = lab.tables.with_grades(runs.df, run_log.grades(runs.experiment_id))
        verdicts.append(lab.stats.paired_difference(df, "a", "b")["verdict"].iloc[0])
        d = df[df["variant"] == "a"].set_index(["input_id", "repeat"])["passed"] - \
            df[df["variant"] == "b"].set_index(["input_id", "repeat"])["passed"]
        naive.append(abs(d.mean()) > 2 * d.std(ddof=1) / len(d) ** 0.5)  # the old pairs-as-evidence reading
    assert verdicts.count("no detectable difference") >= 10, verdicts
    assert sum(naive) > 12 - verdicts.count("no detectable difference")  # the case bites: the old reading overclaims


def test_a_difference_in_escapes_is_reported_as_higher_not_better_unless_told_which_is_better():
    esc = lab.stats.paired_difference(frame([1] * 20, [0] * 20, n_inputs=10), "A", "B", value="escaped")  # B escapes every time
    assert esc["verdict"].iloc[0] == "B higher"
    assert esc["reading"].iloc[0].startswith("escaped is higher for B than for A")


def test_the_demo_escapes_reading_no_longer_contradicts_itself():
    """make demo used to print "no detectable difference" beside an interval that excluded 0 (the
    interval and the verdict came from two procedures). Now both are the sign-flip test's."""
    a = [0, 0, 1, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 1, 1, 0, 1, 0]
    b = [0, 1, 0, 1, 0, 1, 1, 1, 1, 0, 1, 1, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1]
    rows = [{"input_id": f"i{k // 3}", "repeat": k % 3, "model": "m", "variant": v, "escaped": float(x)}
            for v, xs in (("a", a), ("b", b)) for k, x in enumerate(xs)]
    row = lab.stats.paired_difference(pd.DataFrame(rows), "a", "b", value="escaped").iloc[0]
    assert row["high"] < 0 and row["verdict"] == "B higher" and row["p_value"] <= 0.05
    assert row["reading"].startswith("escaped is higher for b than for a: a - b = -0.333 over 8 inputs (24 pairs)")
    assert f"p = {row['p_value']:.3f}; sign-flip test over inputs" in row["reading"]
    assert "does not agree" not in row["reading"]


def test_a_perfect_sweep_on_six_inputs_is_a_verdict_not_nothing():
    """Honest passes every call on 6 inputs x 3 repeats, persona fails every call: that used to read
    "no detectable difference ... -1.00 (95% interval -1.00 to +0.05)"."""
    row = lab.stats.paired_difference(frame([0] * 18, [1] * 18, n_inputs=6), "A", "B").iloc[0]
    assert row["verdict"] == "B better" and row["high"] < 0 and row["p_value"] <= 0.05
    assert row["reading"].startswith("B better than A over 6 inputs (18 pairs): passed A - B = -1.000")
    # one more call for B flipping to a pass is weaker evidence, never a stronger verdict than the sweep
    b = [1] * 18
    b[0] = 0
    weaker = lab.stats.paired_difference(frame([0] * 18, b, n_inputs=6), "A", "B").iloc[0]
    assert weaker["verdict"] == "B better" and weaker["p_value"] >= row["p_value"]


def test_no_detectable_difference_is_printed_exactly_when_the_interval_contains_zero():
    rng = np.random.default_rng(11)
    seen = set()
    for _trial in range(80):
        n_inputs, k = int(rng.integers(6, 30)), int(rng.integers(1, 6))
        pa = rng.uniform(0.2, 0.8, n_inputs)
        pb = np.clip(pa - rng.choice([0.0, 0.3]) + rng.normal(0, 0.2, n_inputs), 0, 1)
        a = (rng.random((k, n_inputs)) < pa).astype(int).ravel()
        b = (rng.random((k, n_inputs)) < pb).astype(int).ravel()
        row = lab.stats.paired_difference(frame(a, b, n_inputs=n_inputs), "A", "B").iloc[0]
        contains = row["low"] <= 0 <= row["high"]
        assert (row["verdict"] == "no detectable difference") == contains, row["reading"]
        assert (row["p_value"] <= 0.05) == (not contains) and row["low"] <= row["difference"] <= row["high"]
        seen.add(row["verdict"])
    assert {"no detectable difference", "A better"} <= seen


def test_twelve_and_thirteen_inputs_read_alike():
    """The switch from the sign-flip test to the t-test at 13 inputs is not a cliff: the same
    per-input differences give about the same p-value and interval on either side of it."""
    d = [1, 1, 1, 0, 1, 0, 1, -1, 1, 0, 1, 1]
    rows = []
    for n in (12, 13):
        diffs = (d + [1])[:n]
        a = [1 if x > 0 else 0 for x in diffs] * 2
        b = [1 if x < 0 else 0 for x in diffs] * 2
        rows.append(lab.stats.paired_difference(frame(a, b, n_inputs=n), "A", "B").iloc[0])
    assert rows[0]["method"] == "sign-flip test over inputs" and rows[1]["method"] == "t-test over inputs"
    assert rows[0]["verdict"] == rows[1]["verdict"] == "A better"
    assert abs(rows[0]["p_value"] - rows[1]["p_value"]) < 0.02 and abs(rows[0]["low"] - rows[1]["low"]) < 0.15


def test_each_input_counts_once_even_when_repeats_track_the_effect():
    """A user re-ran the inputs where A happened to look better: 10 inputs where A wins got 20
    repeats, 10 where B wins by as much got 1. Calls would weigh A's inputs 20 to 1."""
    rows = []
    for i in range(20):
        a_wins = i < 10
        for r in range(20 if a_wins else 1):
            rows += [{"variant": "A", "input_id": f"i{i}", "repeat": r, "model": "m", "passed": float(a_wins)},
                     {"variant": "B", "input_id": f"i{i}", "repeat": r, "model": "m", "passed": float(not a_wins)}]
    df = pd.DataFrame(rows)
    per_input = lab.stats.paired_difference(df, "A", "B").iloc[0]
    assert per_input["difference"] == 0 and per_input["verdict"] == "no detectable difference"
    assert per_input["mean_a"] == 0.5
    by_calls = lab.stats.paired_difference(df, "A", "B", weight="calls").iloc[0]
    assert by_calls["difference"] == pytest.approx((200 - 10) / 210)
    assert lab.stats.rates(df).loc["A", "rate"] == 0.5 and lab.stats.rates(df, weight="calls").loc["A", "rate"] > 0.9


def test_zero_pairs_is_no_pairs_never_a_verdict():
    df = frame([1] * 12, [0] * 12, n_inputs=6)
    df.loc[df["variant"] == "B", "passed"] = np.nan
    row = lab.stats.paired_difference(df, "A", "B").iloc[0]
    assert row["verdict"] == "no pairs" and row["reading"] == "no pairs where both A and B have a passed value"


def test_small_samples_print_counts_with_the_right_singular_and_plural():
    one = lab.stats.paired_difference(frame([1], [0], n_inputs=1), "A", "B").iloc[0]
    assert one["reading"] == ("too few inputs to tell: passed A - B = +1.000 over 1 input (1 pair); "
                              "a verdict and an interval need 6 inputs")
    r = lab.stats.rates(frame([0] * 6, [0] * 6, n_inputs=2)).loc["A"]
    assert math.isnan(r["low"]) and math.isnan(r["high"])
    assert lab.stats.rate_text(r["k"], r["n"], r["inputs"], r["rate"], r["low"], r["high"]) == \
        "0 of 6 calls on 2 inputs (too few inputs for an interval)"
    assert lab.stats.rate_text(1, 1, 1, 1.0, math.nan, math.nan) == "1 of 1 call on 1 input (too few inputs for an interval)"


def test_exactly_these_inputs_never_print_a_verdict_with_no_p_value():
    """population="these" with every repeat agreeing: the verdict has a p-value, not NaN."""
    row = lab.stats.paired_difference(frame([1] * 12, [0] * 12, n_inputs=4), "A", "B", population="these").iloc[0]
    assert row["verdict"] == "A better" and row["p_value"] == 0 and "p < 0.001" in row["reading"]
    assert "on these 4 inputs (12 pairs)" in row["reading"]


def test_a_split_by_four_tags_is_one_family_adjusted_by_holm():
    """Four tags of 8 inputs each; only one tag differs, weakly: read alone it is a verdict,
    read as one of four it is not, and the reading says so in one clause."""
    a, b, tags = [], [], {}
    for t, tag in enumerate(["w", "x", "y", "z"]):
        for i in range(8):
            j = 8 * t + i
            tags[j] = [tag]
            a.append(1 if (tag == "w" and i < 5) or (tag != "w" and i % 2) else 0)
            b.append(1 if tag != "w" and i % 2 else 0)
    res = lab.stats.paired_difference(frame(a, b, tags=tags, n_inputs=32), "A", "B", split_by_tag=True)
    w = res.loc["w"]
    assert w["verdict_unadjusted"] == "A better" and w["p_unadjusted"] <= 0.05
    assert w["family"] == 4 and w["p_value"] == pytest.approx(min(1.0, 4 * w["p_unadjusted"]))
    assert w["verdict"] == "no detectable difference" and w["low"] <= 0 <= w["high"]
    assert "Holm-adjusted over 4 tags" in w["reading"] and res.loc["all", "family"] == 1
    assert lab.stats.holm([0.01, 0.04, 0.03, 0.5]).tolist() == pytest.approx([0.04, 0.09, 0.09, 0.5])


def test_the_plan_is_the_exact_minimum_on_a_pessimistic_spread_and_says_so():
    pilot = _pilot([0.3, 0.1, 0.2, 0.0, 0.4, 0.2, 0.1, 0.3, 0.2, 0.0], repeats=4, seed=3)
    p = stats.plan(pilot, "A", "B", difference=0.15)
    assert p.between_var_planned > p.between_var  # planned on the upper bound, not the point estimate
    assert "80% upper bound the pilot allows" in str(p)
    for o in p.options:  # the fewest inputs that reach the power, no overshoot
        assert p.power_at(o.inputs, o.repeats) >= 0.8 > p.power_at(o.inputs - 1, o.repeats)
        assert o.power_if_as_estimated >= o.power
    r = p.recommended
    assert all((o.calls, -o.inputs) >= (r.calls, -r.inputs) for o in p.options)  # ties go to more inputs
    assert f"Predicted power {r.power:.0%} on the planned between-input variance" in str(p)


def test_a_pilot_with_no_measured_spread_between_inputs_still_plans_for_one():
    """A between-input variance estimated at 0 used to make repeats look as good as inputs."""
    pilot = _pilot([0.0] * 8, repeats=10, seed=1)
    p = stats.plan(pilot, "A", "B", difference=0.2)
    assert p.between_var == 0 and p.between_var_planned > 0
    assert p.power_at(8, 1000) < 0.95  # endless repeats on 8 inputs are not a sure thing


def test_the_planner_predicts_the_sign_flip_test_it_will_run_at_ten_inputs():
    """At 10 inputs the verdict is the sign-flip test's: the predicted power is that test's power on
    the same model, not a t-test's (which promised 72% where 55% was achieved)."""
    rng = np.random.default_rng(4)
    trials, n, k, diff = 3000, 10, 5, 0.3
    base = rng.uniform(0.3, 0.7, (trials, n, 1))
    effect = rng.normal(diff, 0.2, (trials, n, 1))
    a = rng.binomial(k, np.clip(base + effect / 2, 0, 1)[..., 0])
    b = rng.binomial(k, np.clip(base - effect / 2, 0, 1)[..., 0])
    res = stats.difference_verdicts((a - b).astype(float), np.full((trials, n), float(k)), np.zeros((trials, n)),
                                    interval=False)
    achieved = float((res["direction"] == 1).mean())
    within = float(np.mean(2 * base * (1 - base)))  # two independent 0/1 calls at each input's base rate
    predicted = stats.predicted_power(diff, between_var=0.04, within_var=within, inputs=n, repeats=k, rate=0.5)
    assert abs(predicted - achieved) < 0.05, (predicted, achieved)


def test_three_variants_are_compared_as_one_family_of_pairs():
    rows = []
    for i in range(8):
        for r in range(3):
            for v, p in (("A", 1.0 if i < 5 else 0.0), ("B", 0.0), ("C", 0.0)):
                rows.append({"variant": v, "input_id": f"i{i}", "repeat": r, "model": "m", "passed": p})
    res = lab.stats.pairwise(pd.DataFrame(rows)).set_index(["a", "b"])
    ab = res.loc[("A", "B")]
    assert ab["verdict_unadjusted"] == "A better" and ab["family"] == 3
    assert ab["p_value"] == pytest.approx(min(1.0, 3 * ab["p_unadjusted"]))
    assert (ab["verdict"] == "A better") == (ab["low"] > 0) and ab["low"] <= ab["low_unadjusted"]
    assert "Holm-adjusted over 3 pairs of variants" in ab["reading"]
    assert res.loc[("B", "C"), "verdict"] == "no detectable difference"


def test_a_plan_never_promises_to_detect_more_than_a_rate_can_differ():
    p = stats.plan(_pilot([0.8, -0.8] * 4, repeats=20), "A", "B", difference=0.1)
    assert "cannot detect even the largest possible difference with 80% power" in str(p)
    assert "The current experiment (8 inputs x 20 repeats)" in str(p)


@pytest.mark.parametrize("confidence", [0.8, 0.9, 0.95, 0.99])
def test_a_rate_of_none_or_all_has_an_interval_that_holds_it_exactly(confidence):
    """0 passes of n: the interval starts at exactly 0 (not 3e-17, which a reader's check `low <= rate`
    rejects), and n of n ends at exactly 1, for every number of inputs and repeats."""
    for n in range(stats.MIN_INPUTS, 120):
        for repeats in (1, 3):
            clusters = np.repeat(np.arange(n), repeats)
            none = stats.rate_of(np.zeros(n * repeats), clusters, confidence=confidence)
            every = stats.rate_of(np.ones(n * repeats), clusters, confidence=confidence)
            assert none["low"] == 0.0 == none["rate"] < none["high"], (n, repeats, none)
            assert every["low"] < every["rate"] == 1.0 == every["high"], (n, repeats, every)
