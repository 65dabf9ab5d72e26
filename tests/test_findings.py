"""The findings block: what the log says in plain words, matching lab.stats on the same rows."""

from __future__ import annotations

import pandas as pd
import pytest

import lab
from lab.findings import findings
from tests import scripted


def rows(n_inputs=10, repeats=2, a_correct=1.0, b_correct=0.0, unanswerable=(), escape_a=False, escape_b=False):
    out = []
    for i in range(n_inputs):
        unans = i in unanswerable
        for r in range(repeats):
            for v, _ok, esc in (("honest", a_correct, escape_a), ("persona<b>", b_correct, escape_b)):
                escaped = esc if unans else False
                out.append({"id": f"{v}-{i}-{r}", "experiment_id": "e1", "variant": v, "input_id": f"i{i}",
                            "repeat": r, "model": "m", "role": "answer",
                            "input_tags": ["unanswerable"] if unans else ["normal"],
                            "outcome": "escaped" if escaped else "answered", "output": "x"})
    return pd.DataFrame(out)


def grades_for(runs, passed):
    return pd.DataFrame([{"id": f"g{k}", "seq": k, "run_id": rid, "grader": "match:normalized", "score": float(p),
                          "passed": bool(p), "label": None, "detail": None}
                         for k, (rid, p) in enumerate(zip(runs["id"], passed))])


def test_findings_name_the_winner_with_n_and_an_interval_matching_lab_stats():
    runs = rows()
    grades = grades_for(runs, runs["variant"] == "honest")
    f = findings(runs, grades)
    assert f.a == "honest" and f.b == "persona<b>"
    assert f.headline.startswith("honest beats persona<b> on pass rate") or f.headline.startswith("honest beats persona<b>")
    stats = lab.stats.paired_difference(lab.tables.with_grades(runs, grades), "honest", "persona<b>").iloc[0]
    assert f.verdict["low"] == pytest.approx(stats["low"]) and f.verdict["high"] == pytest.approx(stats["high"])
    assert f"{stats['low']:+.2f} to {stats['high']:+.2f}" in f.headline and "10 inputs" in f.headline
    assert "(n = 10 x 2)" in str(f)


def test_findings_say_too_few_inputs_and_name_caveats():
    runs = rows(n_inputs=3)
    f = findings(runs, grades_for(runs, runs["variant"] == "honest"))
    assert f.headline.startswith("Too few inputs to tell (3 inputs")
    assert any(c.startswith("too few inputs to tell: 3 inputs") for c in f.caveats)
    ungraded = findings(runs, None)
    assert any(c.startswith("ungraded") for c in ungraded.caveats) and ungraded.verdict is None


def test_escapes_are_read_by_what_they_mean():
    runs = rows(n_inputs=12, unanswerable=range(6), escape_a=True)  # honest escapes where there is no answer
    passed = [(v == "honest") or (i >= 6) for v, i in zip(runs["variant"], runs["input_id"].str[1:].astype(int))]
    f = findings(runs, grades_for(runs, passed))
    per = f.per_framing
    assert per.loc["honest", "escaped_unanswerable"] == 1 and per.loc["persona<b>", "hallucination"] == 1
    assert per.loc["honest", "appropriate"] == 1 and per.loc["persona<b>", "appropriate"] == pytest.approx(0.5)
    assert f.verdict_value == "appropriate" and f.verdict["verdict"] == "A better"
    text = str(f)
    assert "escapes more often than persona<b>" in text and "higher, not better" in text
    assert "better" not in text.split("Escapes:")[1].split("\n")[0].replace("not better", "")
    assert any("tag unanswerable" in d for d in f.drivers)


def test_findings_html_escapes_every_name():
    runs = rows()
    page = findings(runs, grades_for(runs, runs["variant"] == "honest"))._repr_html_()
    assert "persona&lt;b&gt;" in page and "persona<b>" not in page


def test_compare_framings_grades_by_default_and_opens_with_findings(run_log):
    scripted.SCRIPTS["always_positive"] = lambda m, p: "positive"
    inputs = [{"id": f"r{i}", "text": f"review {i}", "expected": "positive" if i % 2 else "negative"} for i in range(8)]
    cmp = lab.compare_framings("prompts/sentiment.yaml", inputs, variants=["persona", "honest"], repeats=2,
                               model="scripted:always_positive", log=run_log)
    assert cmp.grader == "match:default"
    assert "graded by normalized match against `expected`" in str(cmp)
    assert cmp._repr_html_().startswith("<div class='lab-findings'>")


def test_one_variant_without_grades_gives_no_pairs_not_a_crash(run_log):
    exp = lab.experiment("prompts/sentiment.yaml", inputs=[{"id": f"r{i}", "text": "ok", "expected": "positive"}
                                                           for i in range(6)],
                         model="scripted:echo", variants=["persona", "honest"], log=run_log)
    runs = exp.run()
    df = runs.df
    lab.grade(df[df["variant"] == "persona"], lab.graders.match(), log=run_log)
    cmp = lab.techniques.framing.Comparison(exp.id, run_log, ["persona", "honest"], "match:normalized")
    res = cmp.difference()
    assert res.loc["all", "pairs"] == 0 and res.loc["all", "reading"].startswith("no pairs where both")


def test_ungraded_runs_with_expected_answers_give_no_verdict_and_say_how_to_grade_them(run_log):
    exp = lab.experiment("prompts/sentiment.yaml", inputs="prompts/sentiment_inputs.yaml", model="scripted:seeded",
                         repeats=1, seed=1, log=run_log, progress="off")
    exp.run()
    f = findings(run_log.runs(experiment=exp.id), run_log.grades(exp.id))
    assert f.verdict is None and f.headline.startswith("No verdict between persona and honest")
    assert any("lab.grade(runs, lab.graders.default_grader())" in c for c in f.caveats)


def test_a_perfect_sweep_is_reported_as_a_win_with_its_test():
    runs = rows(n_inputs=6, repeats=3)
    f = findings(runs, grades_for(runs, runs["variant"] == "honest"))
    assert f.headline.startswith("honest beats persona<b> on pass rate: honest - persona<b> = +1.00 (95% interval "
                                 "+1.00 to +1.00; p = 0.016; sign-flip test over inputs")
    assert "every input gave the same difference" in f.headline and "over 6 inputs, 18 pairs" in f.headline


def test_every_rate_carries_its_n_and_small_groups_read_as_counts():
    runs = rows(n_inputs=12, repeats=3, unanswerable=range(2), escape_a=True)
    passed = [(v == "honest") for v in runs["variant"]]
    text = str(findings(runs, grades_for(runs, passed)))
    assert "correct on answerable 100% [" in text and "] (10 inputs x 3)" in text
    assert "escaped on unanswerable 6 of 6 calls on 2 inputs (too few inputs for an interval)" in text
    assert "rates over fewer than 6 inputs are shown as counts, without an interval" in text
    assert "[0%, 99%]" not in text and "nan" not in text.replace("unanswerable", "")


def test_which_tags_drive_it_is_read_as_one_adjusted_family():
    runs = rows(n_inputs=12, repeats=2, unanswerable=range(6), escape_a=True)
    passed = [(v == "honest") or (i >= 6) for v, i in zip(runs["variant"], runs["input_id"].str[1:].astype(int))]
    f = findings(runs, grades_for(runs, passed))
    assert f.drivers == ["tag unanswerable: honest - persona<b> = +1.00 (+1.00 to +1.00, 6 inputs; "
                         "Holm-adjusted over 2 tags)"]
    assert f.by_tag.loc["normal", "verdict"] == "no detectable difference"


def test_repeats_that_differ_by_input_are_named_as_a_caveat():
    runs = rows(n_inputs=8, repeats=6)
    runs = runs[~((runs["input_id"] > "i3") & (runs["repeat"] > 0))]  # inputs i4..i7 were run once
    f = findings(runs, grades_for(runs, runs["variant"] == "honest"))
    assert any(c.startswith("repeats differ by input (1 to 6 calls per input and framing)") for c in f.caveats)
    assert not any(c.startswith("repeats differ") for c in findings(rows(), grades_for(rows(), [True] * 40)).caveats)
