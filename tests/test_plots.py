"""Figures are drawn from log DataFrames only, say what they show, and survive empty or odd logs."""

from __future__ import annotations

import re

import pandas as pd
import pytest

import lab
from lab import plots
from tests import scripted


@pytest.fixture
def sentiment_runs(run_log):
    exp = lab.experiment("prompts/sentiment.yaml", inputs="prompts/sentiment_inputs.yaml", model="scripted:seeded",
                         repeats=3, seed=1, log=run_log)
    lab.grade(exp.run(), lab.graders.default_grader(), log=run_log)
    return run_log.runs(experiment=exp.id)


ALL = [
    lambda df, g: plots.outcome_rates(df, g),
    lambda df, g: plots.paired_difference(df, "persona", "honest", g),
    lambda df, g: plots.retry_spread(df),
    lambda df, g: plots.critique_rounds(df, g),
    lambda df, g: plots.score_by_version(df, g),
    lambda df, g: plots.cost_latency(df),
]


def _axis_titles(fig) -> list[str]:
    layout = fig.layout.to_plotly_json()
    return [v.get("title", {}).get("text") or "" for k, v in layout.items() if k.startswith(("xaxis", "yaxis"))]


@pytest.mark.parametrize("draw", ALL)
def test_every_figure_has_a_title_and_axis_labels_with_units(sentiment_runs, run_log, draw):
    fig = draw(sentiment_runs, run_log.grades())
    assert fig.layout.title.text
    titles = " ".join(_axis_titles(fig))
    assert any(unit in titles for unit in ("(%)", "(ms)", "(USD)", "tokens", "percentage points", "round", "UTC")), titles
    assert len(fig.data) > 0


@pytest.mark.parametrize("draw", ALL)
def test_an_empty_log_gives_a_figure_that_says_so(run_log, draw):
    fig = draw(run_log.runs(), run_log.grades())
    assert fig.layout.title.text
    assert "no runs" in fig.layout.annotations[0].text


def test_outcome_rates_split_by_tag_and_count_escapes_and_correct_answers(sentiment_runs, run_log):
    fig = plots.outcome_rates(sentiment_runs, run_log.grades())
    panels = {a.text for a in fig.layout.annotations}
    assert {"tag: normal", "tag: edge", "tag: unanswerable"} <= panels
    cats = {t.name for t in fig.data}
    assert "escaped" in cats and ({"correct", "wrong"} & cats)  # human words, never "answered-correct"
    assert not any("-" in c for c in cats)
    # the bars are rates with asymmetric intervals (over inputs, from lab.stats.rates)
    bar = fig.data[0]
    assert all(0 <= y <= 100 for y in bar.y)
    assert bar.error_y.array is not None and bar.error_y.arrayminus is not None


def test_correctness_comes_only_from_grades(sentiment_runs, run_log):
    row = sentiment_runs[sentiment_runs["outcome"] == "answered"].iloc[0]
    run_log.add_grade(row["id"], "person", passed=False)
    run_log.add_grade(row["id"], "person", passed=True)  # a regrade: the latest counts
    cats = lab.tables.outcome_categories(sentiment_runs, run_log.grades(), grader="person")
    assert cats[row.name] == "answered-correct"
    assert set(cats) <= set(plots.CATEGORY_ORDER)
    # without grades nothing is "correct", whatever the expected answer and the output's first word
    ungraded = lab.tables.outcome_categories(sentiment_runs, None)
    assert not ungraded.isin(["answered-correct", "answered-wrong"]).any()


def test_paired_difference_figure_draws_the_numbers_lab_stats_computes(sentiment_runs, run_log):
    grades = run_log.grades()
    for metric, value in (("correct", "passed"), ("escaped", "escaped")):
        fig = plots.paired_difference(sentiment_runs, "persona", "honest", grades, metric=metric)
        table = lab.stats.paired_difference(lab.tables.with_grades(sentiment_runs, grades), "persona", "honest", value=value,
                                      split_by_tag=True)
        table = table[table["pairs"] > 0]
        trace = fig.data[0]
        assert list(trace.y) == ["all inputs" if t == "all" else f"tag: {t}" for t in table.index]
        assert list(trace.x) == pytest.approx(list(100 * table["difference"]))  # persona - honest, as named
        has = table["high"].notna().to_numpy()  # one input: no interval over inputs, drawn as a bare dot
        assert has.any()
        assert [x + e for x, e, h in zip(trace.x, trace.error_x.array, has) if h] == pytest.approx(list(100 * table["high"][has]))
        assert [x - e for x, e, h in zip(trace.x, trace.error_x.arrayminus, has) if h] == pytest.approx(list(100 * table["low"][has]))
        assert ((table["low"][has] >= -1) & (table["high"][has] <= 1)).all()


def test_outcome_rates_figure_draws_lab_stats_rates(sentiment_runs, run_log):
    grades = run_log.grades()
    fig = plots.outcome_rates(sentiment_runs, grades, split_by_tag=False)
    esc = lab.stats.rates(sentiment_runs, value="escaped")
    bars = next(t for t in fig.data if t.name == "escaped")
    assert list(bars.y) == pytest.approx(list(100 * esc.loc[list(bars.x), "rate"]))
    assert [y + e for y, e in zip(bars.y, bars.error_y.array)] == pytest.approx(list(100 * esc.loc[list(bars.x), "high"]))


def test_retry_spread_counts_distinct_answers_and_agreement(run_log):
    scripted.SCRIPTS["alternate"] = lambda m, p: ["yes", "no", "yes"][p.get("seed", 0) % 3]
    rows = [{"id": "q1", "text": "a"}]
    exp = lab.experiment("prompts/sentiment.yaml", inputs=rows, model="scripted:alternate", repeats=3,
                         variants=["persona"], log=run_log, seed=3)
    exp.run()
    df = run_log.runs(experiment=exp.id)
    fig = plots.retry_spread(df)
    answers = df["output"].str.casefold().value_counts()
    assert fig.data[0].y[0] == pytest.approx(100 * answers.iloc[0] / 3)
    assert fig.data[0].text[0] == f"{len(answers)} distinct<br>n=3"


def test_critique_rounds_and_version_figures_read_role_round_and_version(run_log):
    base = dict(experiment_id="e", model="m", messages=[], input_id="i", input_tags=["normal"], expected="yes",
                variant="v", prompt_version="abc", finished_at="2026-01-01T00:00:00+00:00")
    from lab.store import RunRecord

    for rnd, (role, out) in enumerate([("answer", "no"), ("revision", "yes")]):
        run_log.add_run(RunRecord(outcome="answered", output=out, role=role, round=rnd, **base))
    df = run_log.runs()
    lab.grade(df, lab.graders.match(), log=run_log)
    fig = plots.critique_rounds(df, run_log.grades())
    assert list(fig.data[0].x) == [0, 1] and list(fig.data[0].y) == [0.0, 100.0]
    fig = plots.score_by_version(df, run_log.grades())
    assert [c[0] for c in fig.data[0].customdata] == ["abc"] and list(fig.data[0].text) == ["n=1"]  # the answer; revisions are not versions


def test_cost_latency_has_three_panels_with_units(sentiment_runs):
    fig = plots.cost_latency(sentiment_runs)
    assert {fig.layout.yaxis.title.text, fig.layout.yaxis2.title.text, fig.layout.yaxis3.title.text} == {
        "latency (ms)", "output tokens", "cost (USD)"}
    assert isinstance(sentiment_runs, pd.DataFrame)


def test_every_rate_bar_and_point_carries_its_n(sentiment_runs, run_log):
    bars = plots.outcome_rates(sentiment_runs)
    for trace in bars.data:
        assert all(re.fullmatch(r"\d+/\d+", t) for t in trace.text)
    diff = plots.paired_difference(sentiment_runs, "persona", "honest", run_log.grades())
    assert list(diff.data[0].text)[0].strip() == "n=8 inputs, 24 pairs"
    cost = plots.cost_latency(sentiment_runs)
    assert all("n=24" in str(x) for t in cost.data for x in t.x)


def test_a_difference_of_rates_is_drawn_on_a_fixed_minus_100_to_100_point_axis(sentiment_runs, run_log):
    fig = plots.paired_difference(sentiment_runs, "persona", "honest", run_log.grades())
    lo, hi = fig.layout.xaxis.range
    assert lo <= -100 and hi >= 100 and (lo, hi) == tuple(plots.paired_difference(
        sentiment_runs, "persona", "honest", metric="escaped").layout.xaxis.range)


def test_facets_for_eight_tags_wrap_into_rows_that_do_not_overlap(run_log):
    rows = [{"id": f"i{k}", "text": "x", "tags": [f"tag{k}"], "expected": "positive"} for k in range(8)]
    exp = lab.experiment("prompts/sentiment.yaml", inputs=rows, model="scripted:seeded", repeats=1, seed=1,
                         log=run_log)
    exp.run()
    fig = plots.outcome_rates(run_log.runs(experiment=exp.id))
    layout = fig.layout.to_plotly_json()
    domains = [tuple(v["domain"]) for k, v in layout.items() if k.startswith("yaxis")]
    rows_ = sorted(set(domains))
    assert len(rows_) == 2 and rows_[0][1] + 0.05 < rows_[1][0]  # a clear gap for the tick labels
    assert fig.layout.height >= 600
    assert not any(v.get("title", {}).get("text") for k, v in layout.items() if k.startswith("yaxis"))
    assert any(a.text == "share of calls (%)" for a in fig.layout.annotations)  # one y title, outside the panels


def test_versions_are_ticks_in_time_order_not_sub_millisecond_times(run_log):
    from lab.store import RunRecord

    for version, when in ([("v1aaaaaaaa", "2026-01-01T10:00:00.123456+00:00"),
                                         ("v2bbbbbbbb", "2026-01-01T10:00:00.923456+00:00")]):
        run_log.add_run(RunRecord(experiment_id="e", model="m", messages=[], outcome="answered", output="yes",
                                  expected="yes", variant="v", prompt_version=version, finished_at=when))
    lab.grade(run_log.runs(), lab.graders.match(), log=run_log)
    fig = plots.score_by_version(run_log.runs(), run_log.grades())
    assert fig.layout.xaxis.type == "category"
    assert list(fig.data[0].x) == ["v1aaaaaa<br>2026-01-01 10:00", "v2bbbbbb<br>2026-01-01 10:00"]


def test_cost_panel_says_cost_unknown_for_the_model_instead_of_an_empty_axis(sentiment_runs):
    fig = plots.cost_latency(sentiment_runs)
    assert any("cost unknown for scripted:seeded" in a.text for a in fig.layout.annotations)
    assert not any(t.type == "bar" for t in fig.data)  # no $0 bar that reads as "free"
    assert all(fig.layout[f"xaxis{i}"].title.text == "variant" for i in ("", "2", "3"))


def test_a_free_model_says_so_on_the_cost_panel(sentiment_runs):
    runs = sentiment_runs.assign(cost_usd=0.0)
    fig = plots.cost_latency(runs)
    assert any("$0: no per-call price for scripted:seeded" in a.text for a in fig.layout.annotations)
    assert tuple(fig.layout.yaxis3.range) == (0, 1)


def test_a_variant_keeps_one_colour_across_figures_and_two_variants_never_share_one(sentiment_runs):
    cost = {t.name: t.marker.color for t in plots.cost_latency(sentiment_runs).data if t.type == "box"}
    spread = {t.name: t.marker.color for t in plots.retry_spread(sentiment_runs).data}
    assert cost == spread and len(set(cost.values())) == len(cost) == 2
    assert plots.variant_colors(["persona", "honest"]) == plots.variant_colors(["honest", "persona"])
