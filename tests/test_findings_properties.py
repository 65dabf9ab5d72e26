"""Every sentence the lab prints is true: properties checked on generated, log-shaped experiments.

Hypothesis draws experiments as a user's log holds them (1-40 inputs, 1-20 repeats, cells missing,
some inputs unanswerable, framings that never or always pass) and every findings object built from
them must read consistently: a verdict exactly when its interval excludes 0, the estimate inside its
interval, no "nan", no "1 inputs", no interval from too few inputs, and the numbers in the text equal
those lab.stats gives for the same rows. Bounded for the suite (PROMPTLAB_PROPERTY_EXAMPLES raises it).
"""

from __future__ import annotations

import math
import os
import re

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lab
from lab.findings import behaviour, findings
from lab.stats import MIN_INPUTS, format_p, interval_ends, rate_text

EXAMPLES = int(os.environ.get("PROMPTLAB_PROPERTY_EXAMPLES", "40"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
RATE = st.sampled_from([0.0, 1.0, 0.5, 0.1, 0.9, 0.3])  # 0 and 1 make unanimous and constant data


@st.composite
def experiments(draw):
    """(runs, grades) of a two-framing experiment, shaped like log.runs() and log.grades()."""
    n_inputs = draw(st.integers(1, 40))
    repeats = draw(st.integers(1, 20))
    rate_a, rate_b = draw(RATE), draw(RATE)
    spread = draw(st.sampled_from([0.0, 0.3]))  # inputs differ from each other, or not at all
    unanswerable = draw(st.integers(0, min(n_inputs, 8)))
    missing = draw(st.sampled_from([0.0, 0.0, 0.1, 0.4]))
    escape_a, escape_b = draw(st.booleans()), draw(st.booleans())
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 31)))
    shift = rng.uniform(-spread, spread, n_inputs)
    runs, grades = [], []
    for i in range(n_inputs):
        unans = i < unanswerable
        tags = ["unanswerable"] if unans else (["edge"] if i % 3 == 0 else ["normal"])
        for r in range(repeats):
            for v, base, esc in (("honest", rate_a, escape_a), ("persona", rate_b, escape_b)):
                if (i, r) != (0, 0) and rng.random() < missing:
                    continue  # a call that never landed in the log (the first call of each framing did)
                escaped = unans and esc and rng.random() < 0.8
                rid = f"{v}-{i}-{r}"
                runs.append({"id": rid, "experiment_id": "prop", "variant": v, "input_id": f"in{i}", "repeat": r,
                             "model": "m", "role": "answer", "input_tags": tags,
                             "outcome": "escaped" if escaped else "answered", "output": "x"})
                if not escaped and rng.random() >= missing / 2:  # some answers stay ungraded
                    ok = rng.random() < float(np.clip(base + shift[i], 0, 1))
                    grades.append({"id": f"g{len(grades)}", "seq": len(grades), "run_id": rid,
                                   "grader": "match:normalized", "score": float(ok), "passed": ok,
                                   "label": None, "detail": None})
    return pd.DataFrame(runs), pd.DataFrame(grades, columns=["id", "seq", "run_id", "grader", "score", "passed",
                                                             "label", "detail"])


def _agrees(row) -> None:
    """The reading's verdict agrees with its interval, and the estimate lies inside it."""
    verdict, low, high, est = row["verdict"], row["low"], row["high"], row["difference"]
    if verdict in ("no pairs", "too few inputs to tell"):
        assert math.isnan(low) and math.isnan(high) and math.isnan(row["p_value"]), row
        return
    assert low <= est <= high, row
    assert -1 <= low and high <= 1, row
    if verdict == "no detectable difference":
        assert low <= 0 <= high and row["p_value"] > 0.05, row
    else:
        assert (low > 0 or high < 0) and row["p_value"] <= 0.05, row
        assert (est > 0) == (verdict in ("A better", "A higher")), row


def _no_false_words(text: str) -> None:
    assert not re.search(r"\bnan\b|\binf\b|n/a to", text, re.I), text
    assert not re.search(r"(?<![\d.])1 (inputs|pairs|calls|repeats)\b", text), text
    assert not re.search(r"(better|higher).*interval [+-]0\.00+ to|(better|higher).*to [+-]0\.00+\b", text), text
    for low, high in re.findall(r"\[(\d+)%, (\d+)%\]", text):  # no "[0%, 99%]": intervals say something
        assert int(high) - int(low) < 90, text


@SETTINGS
@given(experiments())
def test_every_findings_sentence_agrees_with_lab_stats_on_the_same_rows(exp):
    runs, grades = exp
    f = findings(runs, grades, a="honest", b="persona")
    text = str(f)
    _no_false_words(text)
    _no_false_words(f._repr_html_())
    df = behaviour(lab.tables.with_grades(runs, grades))
    value = f.verdict_value
    if f.verdict is not None:
        ref = lab.stats.paired_difference(df, "honest", "persona", value=value).iloc[0]
        _agrees(f.verdict)
        assert f.verdict["difference"] == ref["difference"]
        assert f.verdict["p_unadjusted"] == ref["p_value"] or math.isnan(ref["p_value"])
        assert f"honest - persona = {ref['difference'] + 0.0:+.2f}" in f.headline
        if ref["verdict"] != "too few inputs to tell":
            ends = interval_ends(ref["low"], ref["high"], 2)
            assert f"interval {ends[0]} to {ends[1]}" in f.headline
            assert format_p(ref["p_value"]) in f.headline
        assert f"{ref['inputs']} input" in f.headline
    if f.by_tag is not None:
        for _, row in f.by_tag.iterrows():
            _agrees(row)
    if f.escapes is not None and f.escapes["pairs"]:
        _agrees(f.escapes)
    for m in ("appropriate", "correct_answerable", "escaped_unanswerable"):
        r = lab.stats.rates(df, value=m)
        for _variant, row in r.iterrows():
            if row["n"]:
                shown = rate_text(row["k"], row["n"], row["inputs"], row["rate"], row["low"], row["high"])
                assert shown in text, (shown, text)
                assert math.isnan(row["low"]) == (row["inputs"] < MIN_INPUTS)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True)
@given(n=st.integers(1, 40), k=st.integers(1, 20), rate=RATE, spread=st.sampled_from([0.0, 0.2, 0.5]),
       seed=st.integers(0, 2 ** 31), weight=st.sampled_from(["inputs", "calls"]),
       population=st.sampled_from(["inputs", "these"]))
def test_every_paired_reading_agrees_with_its_interval(n, k, rate, spread, seed, weight, population):
    """The same property straight on lab.stats, on 64 experiments at a time through its core."""
    rng = np.random.default_rng(seed)
    trials = 64
    sizes = rng.integers(0, k + 1, (trials, n)).astype(float)  # cells missing at random
    sizes[:, 0] = k
    pa = np.clip(rate + rng.uniform(-spread, spread, (trials, n)), 0, 1)
    pb = np.clip(rate + rng.uniform(-spread, spread, (trials, n)), 0, 1)
    sums = rng.binomial(sizes.astype(int), pa) - rng.binomial(sizes.astype(int), pb)
    res = lab.stats.difference_verdicts(sums.astype(float), sizes, np.zeros_like(sizes) + 0.5 * sizes,
                                        weight=weight, population=population)
    few = res["direction"] == -2
    assert np.all(np.isnan(res["low"][few]) & np.isnan(res["p_value"][few]))
    ok = ~few
    low, high, est, p = res["low"][ok], res["high"][ok], res["estimate"][ok], res["p_value"][ok]
    assert np.all((low <= est + 1e-12) & (est <= high + 1e-12) & (low >= -1) & (high <= 1))
    verdict = res["direction"][ok] != 0
    assert np.array_equal(verdict, (low > 0) | (high < 0))
    assert np.array_equal(verdict, p <= 0.05 + 1e-12)
