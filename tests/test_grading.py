"""Graders: expected match, regex, JSON schema, custom, escape hatch, the LLM judge, human ratings."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import lab
from lab.errors import GraderError
from lab.judges import parse_judge_score
from lab.text import normalize, numbers_in
from tests import scripted

scripted.SCRIPTS["judge4"] = lambda m, p: "SCORE: 4 - clear enough"
scripted.SCRIPTS["judge_noise"] = lambda m, p: f"SCORE: {[2, 4, 4][p.get('seed', 0) % 3]}"
scripted.SCRIPTS["answer_is_seven"] = lambda m, p: "ANSWER: 7\nbecause 3 + 4 = 7"


def run(output, expected=None, tags=("normal",), outcome="answered"):
    return {"id": "r1", "output": output, "expected": expected, "input_tags": list(tags), "outcome": outcome,
            "input_id": "i1"}


@pytest.mark.parametrize("output,expected,mode,location,ok", [
    ("Positive.", "positive", "normalized", "whole", True),
    ("Positive.", "positive", "exact", "whole", False),
    ("60%", "60", "exact", "whole", False),
    ("60%", "60", "normalized", "whole", True),
    ("60%", 60, "numeric", "whole", True),
    ("9.90", "9.9", "normalized", "whole", False),
    ("9.90", 9.9, "numeric", "whole", True),
    ("1,000", 1000, "numeric", "whole", True),
    ("The answer is 7 apples", 7, "numeric", "whole", False),
    ("The answer is 7 apples", 7, "numeric", "end", True),
    ("3 + 4 = 7", 7, "numeric", "start", False),
    ("It is Paris, of course", "paris", "normalized", "anywhere", True),
    ("Parisian food", "paris", "normalized", "anywhere", False),
    ("negative", ["negative", "UNSURE"], "normalized", "whole", True),
])
def test_match_modes_handle_the_surprising_cases(output, expected, mode, location, ok):
    g = lab.graders.match(mode=mode, location=location)
    assert g(run(output, expected)).passed is ok


def test_match_with_marker_reads_only_what_follows_it():
    g = lab.graders.match(mode="numeric", marker="ANSWER:", location="start")
    assert g(run("3 + 4 = 7, so\nANSWER: 7", 7)).passed is True
    assert g(run("ANSWER: 12 because 3 + 4 = 7", 7)).passed is False
    assert g(run("seven", 7)).label == "no marker"


def test_match_writes_no_grade_for_rows_without_expected():
    assert lab.graders.match()(run("anything", None)) is None
    assert lab.graders.match()(run("anything", float("nan"))) is None  # a DataFrame's missing value
    assert lab.graders.match(mode="numeric")(run("7", pd.NA)) is None


def test_a_run_with_missing_expected_gets_no_match_grade(run_log):
    exp = lab.experiment("prompts/sentiment.yaml", inputs=[{"id": "a", "text": "great", "expected": "positive"},
                                                          {"id": "b", "text": "meh"}],
                         model="scripted:echo", variants=["persona"], log=run_log)
    runs = exp.run()
    df = runs.df
    df.loc[df["input_id"] == "b", "expected"] = float("nan")  # as pandas hands a missing value over
    graded = lab.grade(df, lab.graders.match(), log=run_log)
    assert set(df.loc[df["id"].isin(graded["run_id"]), "input_id"]) == {"a"}


def test_kappa_and_alpha_next_to_raw_agreement():
    from lab.judges import cohen_kappa, krippendorff_alpha

    assert cohen_kappa([1, 1, 0, 0], [1, 1, 0, 0]) == 1.0
    assert cohen_kappa([1, 0, 1, 0], [0, 1, 0, 1]) == -1.0
    assert cohen_kappa([1, 1, 1, 1], [1, 1, 1, 0]) == 0.0  # 75% raw agreement, nothing beyond chance
    assert krippendorff_alpha([1, 2, 3, 4, 5], [1, 2, 3, 4, 5]) == 1.0
    assert krippendorff_alpha([1, 2, 3, 4, 5], [5, 4, 3, 2, 1]) < 0


# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section E: 4 observers, 12 units,
# missing values; the paper gives alpha for each metric.
_K2011 = [[1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
          [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
          [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
          [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None]]


@pytest.mark.parametrize("level, published", [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849),
                                               ("ratio", 0.797)])
def test_alpha_takes_many_raters_and_missing_values_as_in_krippendorffs_worked_example(level, published):
    from lab.judges import krippendorff_alpha

    assert krippendorff_alpha(*_K2011, level=level) == pytest.approx(published, abs=5e-4)


def test_alpha_agrees_with_the_krippendorff_package_on_random_ratings_with_gaps():
    krippendorff = pytest.importorskip("krippendorff")  # GPL-3.0: a test-only reference, not a dependency
    from lab.judges import krippendorff_alpha

    rng = np.random.default_rng(5)
    for level in ("nominal", "ordinal", "interval", "ratio"):
        data = rng.integers(1, 6, size=(3, 40)).astype(float)
        data[rng.random(data.shape) < 0.2] = np.nan
        ours = krippendorff_alpha(*data.tolist(), level=level)
        assert ours == pytest.approx(krippendorff.alpha(reliability_data=data, level_of_measurement=level), abs=1e-9)


def test_kappa_skips_items_a_rater_left_out_and_alpha_reads_labels():
    from lab.judges import cohen_kappa, krippendorff_alpha

    assert cohen_kappa([1, 0, None, 1], [1, 0, 1, float("nan")]) == 1.0
    assert krippendorff_alpha(["yes", "no", "yes"], ["yes", "no", None], ["yes", "no", "no"], level="nominal") > 0
    assert math.isnan(krippendorff_alpha([3, 3], [3, 3]))  # one value everywhere: no disagreement to expect
    with pytest.raises(lab.ParameterError, match="at least two raters"):
        krippendorff_alpha([1, 2])


def test_a_judge_whose_replies_cannot_be_read_raises_a_warning(answers, run_log):
    scripted.SCRIPTS["mumble"] = lambda m, p: "hmm"
    with pytest.warns(UserWarning, match="unparsed"):
        lab.grade(answers, lab.judge("Correct.", model="scripted:mumble", repeats=1))
    grades = run_log.grades(answers.experiment_id)
    f = lab.findings.findings(answers.df, grades)
    assert any("unparsed" in c and "do not trust" in c for c in f.caveats)


def test_numeric_match_on_text_expected_names_the_input():
    with pytest.raises(GraderError, match="i1"):
        lab.graders.match(mode="numeric")(run("7", "seven"))


def test_bad_options_are_refused_when_the_grader_is_built():
    with pytest.raises(GraderError, match="mode"):
        lab.graders.match(mode="fuzzy")
    with pytest.raises(GraderError, match="does not compile"):
        lab.graders.regex("([")
    with pytest.raises(GraderError, match="schema itself is invalid"):
        lab.graders.json_schema({"type": "nonsense"})
    with pytest.raises(GraderError, match="rubric"):
        lab.judge("   ")
    with pytest.raises(lab.ModelSpecError):
        lab.judge("be clear", model="nosuch:model")


def test_normalize_and_numbers():
    assert normalize("  **Positive!** ") == "positive"
    assert normalize("9.9") == "9.9"
    assert numbers_in("between 9.11 and 9.9, about 1,000 or −3") == [9.11, 9.9, 1000.0, -3.0]


def test_regex_and_json_schema_and_custom():
    assert lab.graders.regex(r"(positive|negative)", ignore_case=True)(run("It is Negative")).label == "Negative"
    schema = {"type": "object", "required": ["label"], "properties": {"label": {"enum": ["pos", "neg"]}}}
    g = lab.graders.json_schema(schema)
    assert g(run('Sure: {"label": "pos"} done')).passed is True
    bad = g(run('{"label": "meh"}'))
    assert bad.label == "invalid" and "label" in bad.detail["errors"][0]
    assert g(run("no json here")).label == "no json"
    assert lab.graders.json_schema(schema, extract="whole")(run('x {"label": "pos"}')).label == "no json"
    short = lab.graders.custom(lambda out: len(out) < 10, name="short")
    assert short.name == "custom:short" and short(run("tiny")).passed is True
    assert lab.graders.custom(lambda out, r: r["input_id"])(run("x")).label == "i1"


def test_escape_hatch_grader_says_whether_escaping_was_right():
    g = lab.graders.escape_hatch("UNSURE")
    assert g(run("UNSURE", tags=["unanswerable"])).passed is True
    assert g(run("UNSURE")).passed is False  # over-abstention
    assert g(run("positive", tags=["unanswerable"])).label == "answered"
    assert lab.graders.escape_hatch()(run("whatever", outcome="escaped")).label == "escaped"


def test_judge_score_parsing():
    assert parse_judge_score("SCORE: 4. Good.", "1-5") == 4
    assert parse_judge_score("I'd give it 9", "1-5") is None
    assert parse_judge_score("FAIL, off-topic", "pass/fail") == 0
    assert parse_judge_score("nothing", "1-10") is None


@pytest.fixture
def answers(run_log):
    exp = lab.experiment("prompts/arithmetic.yaml", inputs="prompts/arithmetic_inputs.yaml",
                         model="scripted:answer_is_seven", seed=1, log=run_log, variants=["answer_first"])
    return exp.run()


def test_grades_are_rows_pointing_at_runs_and_regrading_adds_rows(answers, run_log):
    g = lab.graders.match(mode="numeric", marker="ANSWER:", location="start")
    first = lab.grade(answers, g)
    assert len(first) == 4 and set(first["run_id"]) == set(answers.df["id"])
    assert first.set_index("run_id")["passed"].sum() == 1  # only "apples" is 7
    before = answers.df
    lab.grade(answers, g)
    assert len(run_log.grades(answers.experiment_id)) == 8
    pd.testing.assert_frame_equal(before, answers.df)  # runs are never rewritten
    view = lab.tables.with_grades(answers.df, run_log.grades(answers.experiment_id))
    assert view["grader"].eq("match:numeric").all() and view["passed"].sum() == 1


def test_judge_calls_are_logged_runs_linked_to_the_graded_run(answers, run_log):
    g = lab.judge("Correct and shows the working.", model="scripted:judge_noise", repeats=3)
    grades = lab.grade(answers, g)
    assert len(grades) == 4
    judged = run_log.runs(experiment=f"{answers.experiment_id}:judge")
    assert len(judged) == 12 and set(judged["role"]) == {"judge"}
    assert set(judged["parent_id"]) == set(answers.df["id"])
    assert sorted(judged["repeat"].unique()) == [0, 1, 2]
    assert all(p["temperature"] == 0 for p in judged["params"])
    d = grades["detail"].iloc[0]
    assert len(d["scores"]) == 3 and d["self_agreement"] == pytest.approx(d["scores"].count(max(set(d["scores"]), key=d["scores"].count)) / 3)
    assert "Correct and shows the working." in judged["messages"].iloc[0][0]["content"]
    assert len(run_log.runs(experiment=answers.experiment_id)) == 4  # the graded experiment stays one row per answer


def test_human_ratings_rankings_and_judge_agreement(answers, run_log):
    ids = list(answers.df["id"])
    lab.grade(answers, lab.judge("Correct.", model="scripted:judge4", repeats=1))
    for i, rid in enumerate(ids):
        lab.rate(rid, rater="ana", score=[4, 2, 5, 1][i], passed=i != 1, note="checked by hand", log=run_log)
    grades = run_log.grades(answers.experiment_id)
    human = grades[grades["grader"] == "human:ana"]
    assert len(human) == 4 and human["detail"].iloc[0] == {"note": "checked by hand"}
    agree = lab.judges.judge_agreement(grades, judge="judge:scripted:judge4", human="human:ana")
    assert agree["runs"] == 4 and agree["judge_self_agreement"] == 1.0
    assert agree["pass_agreement"] == pytest.approx(0.75)  # the judge passes all four; ana failed one
    # ... which is no agreement beyond chance: a judge that passes everything has kappa 0
    assert agree["kappa"] == pytest.approx(0.0) and "kappa_low" in agree and "alpha" in agree
    assert agree["unparsed_share"] == 0.0
    ranked = lab.rank(ids[:3], rater="ana", log=run_log)
    assert len(ranked) == 3
    with pytest.raises(GraderError, match="no run with id"):
        lab.rate("nope", rater="ana", score=3, log=run_log)
    with pytest.raises(GraderError, match="score"):
        lab.rate(ids[0], rater="ana", score="great", log=run_log)


def test_prompt_file_grader_typo_fails_at_load(write):
    p = write("p.yaml", "task: t\ngrader:\n  kind: match\n  mood: numeric\nvariants:\n  a:\n    user: hi\n")
    with pytest.raises(lab.PromptFileError, match="line 2: grader.*mood"):
        lab.prompts.load_prompt(p)


def test_prompt_file_judge_spec_typo_fails_at_load(write):
    p = write("p.yaml", "task: t\ngrader:\n  kind: judge\n  rubrc: Correct.\nvariants:\n  a:\n    user: hi\n")
    with pytest.raises(lab.PromptFileError, match="line 2: grader: judge has no option 'rubrc'"):
        lab.prompts.load_prompt(p)
    p = write("q.yaml", "task: t\ngrader:\n  kind: judge\n  rubric: Correct.\n  repeats: two\nvariants:\n  a:\n    user: hi\n")
    with pytest.raises(lab.PromptFileError, match="line 2: grader: judge's repeats must be int"):
        lab.prompts.load_prompt(p)


def test_prompt_file_judge_with_a_bad_value_fails_before_any_call_naming_file_and_line(write, run_log):
    p = write("p.yaml", "task: t\ngrader:\n  kind: judge\n  rubric: Correct.\n  repeats: 0\nvariants:\n  a:\n    user: hi\n")
    lab.prompts.load_prompt(p)  # the shape is right; the value is checked where the judge is built
    with pytest.raises(GraderError, match=r"p\.yaml line 2: grader: judge: repeats"):
        lab.compare_framings(p, model="scripted:echo", log=run_log)
    p = write("q.yaml", "task: t\ngrader:\n  kind: judge\n  rubric: Correct.\n  model: nowhere:x\nvariants:\n  a:\n    user: hi\n")
    with pytest.raises(lab.ModelSpecError, match=r"q\.yaml line 2: grader: "):
        lab.compare_framings(p, model="scripted:echo", log=run_log)
    assert run_log.runs().empty


def test_the_judge_spec_prompt_files_are_checked_against_takes_what_the_judge_takes():
    import inspect

    assert list(lab.graders.JUDGE_SPEC_FIELDS) == list(inspect.signature(lab.judges.judge).parameters)
    assert lab.graders.check_grader_spec({"kind": "judge", "rubric": "Correct.", "repeats": 2}) is None
    with pytest.raises(GraderError, match="lab.judges.judge_from_spec"):
        lab.graders.grader_from_spec({"kind": "judge", "rubric": "Correct."})
    built = lab.judges.judge_from_spec({"kind": "judge", "rubric": "Correct.", "model": "scripted:judge4", "repeats": 2})
    assert built.name == "judge:scripted:judge4" and built.options["repeats"] == 2


def test_judge_decoys_are_logged_graded_and_counted_per_kind(run_log, write):
    # a gameable "judge": scores every answer 5, decoys included
    scripted.SCRIPTS["lenient"] = lambda m, p: "5"
    prompt = write("p.yaml", "task: t\nvariants:\n  a:\n    user: 'Describe {{ text }}'\n")
    runs = lab.experiment(prompt, [{"id": "r1", "text": "a cat"}, {"id": "r2", "text": "a dog"}],
                          model="scripted:echo", log=run_log).run()
    report = lab.judges.judge_decoys(lab.judge("A vivid description.", model="scripted:lenient", repeats=1), runs,
                              per_kind=2, log=run_log)
    assert list(report.index) == ["repetition", "empty", "off-topic", "self-praise"]
    assert (report["n"] == 2).all() and (report["pass_rate"] == 1.0).all()  # this judge is fooled by all
    decoys = run_log.runs(experiment=f"{runs.experiment_id}:decoys")
    assert len(decoys) == 8 and set(decoys["role"]) == {"decoy"}
    assert set(decoys["parent_id"]) == set(runs.df["id"])
    assert len(run_log.runs(experiment=runs.experiment_id)) == 2  # the graded experiment is untouched


@pytest.mark.slow
def test_a_local_judge_can_be_checked_against_decoys(run_log, write):
    prompt = write("p.yaml", "task: t\nparams: {max_tokens: 16}\nvariants:\n  a:\n    user: 'Name a fruit that is {{ colour }}.'\n")
    runs = lab.experiment(prompt, [{"id": "y", "colour": "yellow"}], log=run_log, seed=1).run()
    report = lab.judges.judge_decoys(lab.judge("Names one real fruit of that colour.", repeats=1), runs, per_kind=1,
                              log=run_log)
    assert (report["n"] == 1).all() and report["pass_rate"].between(0, 1).all()
    judged = run_log.runs(experiment=f"{runs.experiment_id}:decoys:judge")
    assert len(judged) == 4 and set(judged["role"]) == {"judge"}


def test_built_in_prompts_are_filled_in_one_pass():
    from lab.judges import JUDGE_TEMPLATE
    from lab.text import fill

    text = fill(JUDGE_TEMPLATE, request="Explain what {answer} means in a template", answer="MODEL SAID THIS",
                rubric="r", instruction="i")
    assert "Explain what {answer} means in a template" in text and text.count("MODEL SAID THIS") == 1


def test_prompt_versions_of_a_path_include_a_version_first_seen_under_another_path(run_log, tmp_path):
    body = open("prompts/sentiment.yaml").read()
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text(body)
    second.write_text(body)
    for path in (first, second):
        lab.experiment(str(path), inputs=[{"id": "x", "text": "ok"}], model="scripted:echo", variants=["persona"],
                       log=run_log).run()
    got = run_log.prompt_versions(str(second))
    assert len(got) >= 1 and set(got["version"]) == set(run_log.prompt_versions(str(first))["version"])


@pytest.mark.parametrize("seed", range(5))
def test_the_notebook_table_and_the_findings_count_the_same_grade_per_run(seed):
    """One rule picks the grade that counts (a grader's newest grade of a run; with no grader named,
    the grader used last on these runs): the table a notebook reads (lab.tables.with_grades) and the
    findings (lab.findings.first_answers) agree on generated regrades by several graders."""
    from lab.findings import first_answers
    from lab.tables import with_grades

    rng = np.random.default_rng(seed)
    runs = pd.DataFrame({"id": [f"r{i}" for i in range(30)], "variant": ["a", "b"] * 15,
                         "input_id": [f"in{i // 2}" for i in range(30)], "repeat": 0, "model": "m",
                         "outcome": "answered", "role": "answer", "input_tags": [["normal"]] * 30})
    n = 80
    grades = pd.DataFrame({"run_id": rng.choice([*runs["id"], "elsewhere"], n),
                           "grader": rng.choice(["match:default", "judge:x", "human:ana"], n),
                           "passed": rng.choice([1.0, 0.0, np.nan], n), "score": rng.uniform(0, 5, n),
                           "label": None, "seq": rng.permutation(n)})
    for grader in (None, "match:default", "judge:x", "human:ana", "nobody"):
        table = with_grades(runs, grades, grader=grader)["passed"].to_numpy()
        np.testing.assert_array_equal(first_answers(runs, grades, grader).passed, table)
    newest = grades.sort_values("seq")
    newest = newest[newest["run_id"] != "elsewhere"].iloc[-1]
    picked = with_grades(runs, grades)
    assert set(picked["grader"].dropna()) == {newest["grader"]}  # no grader named: the one used last
