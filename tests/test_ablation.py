"""Context ablation: prompt files with named parts, leave-one-out and add-one variants, paired
effects per part. Fast tests use the scripted provider; the end-to-end one the local model."""

from __future__ import annotations

import random
import re

import pytest

import lab
from lab.techniques.ablation import ablation_variants
from tests import scripted

PARTS_PROMPT = """
task: planted
escape_hatch: UNSURE
params: {temperature: 0.7, max_tokens: 16}
grader: {kind: match, mode: normalized, location: whole, marker: "ANSWER:"}
variants:
  honest:
    parts:
      - who: I'm checking a small model for a quiz table.
      - format: "Reply in the form ANSWER: <word>."
      - inert: The weather today is mild.
      - way_out: "If there is no true answer, reply ANSWER: UNSURE."
      - question: "Question: {{ question }}"
  persona:
    system: You are a trivia champion.
    user: "{{ question }}"
"""

ANSWERS = {"What is the capital of France?": "Paris", "What is the capital of Italy?": "Rome",
           "What is the capital of Japan?": "Tokyo", "What is the capital of Spain?": "Madrid",
           "What is the capital of Peru?": "Lima", "What is the capital of Egypt?": "Cairo",
           "How many legs does a spider have?": "8", "How many days are in a week?": "7"}


def planted_model(messages, params):
    """A model whose answers pass the grader only when told the format; right 80% of the time
    (by seed), and that escapes on unanswerable questions only when the way out is declared."""
    text = "\n".join(m["content"] for m in messages)
    q = messages[-1]["content"].strip().splitlines()[-1].removeprefix("Question: ")
    rnd = random.Random(params.get("seed"))
    answer = ANSWERS.get(q)
    if answer is None:
        answer = "UNSURE" if "no true answer" in text and rnd.random() < 0.8 else "Bob"
    elif rnd.random() > 0.8:
        answer = "Paris" if answer != "Paris" else "Rome"
    return f"ANSWER: {answer}" if "ANSWER: <word>" in text else f"I think it is {answer}."


scripted.SCRIPTS["planted"] = planted_model

INPUTS = [{"id": f"q{i}", "question": q, "expected": a} for i, (q, a) in enumerate(ANSWERS.items())] + [
    {"id": "nobody", "question": "What is the middle name of Harold Quenby?", "expected": "UNSURE",
     "tags": ["unanswerable"]},
    {"id": "future", "question": "Who won the 2031 Rugby World Cup?", "expected": "UNSURE", "tags": ["unanswerable"]},
]


@pytest.fixture
def parts_prompt(write):
    return write("planted.yaml", PARTS_PROMPT)


# ---- prompt files with named parts ---------------------------------------------------------------

def test_parts_are_joined_into_the_user_message_in_order(parts_prompt):
    v = lab.prompts.load_prompt(parts_prompt).variant("honest")
    assert [n for n, _ in v.parts] == ["who", "format", "inert", "way_out", "question"]
    msgs = v.render({"question": "What is the capital of France?"})
    assert msgs == [{"role": "user", "content": "I'm checking a small model for a quiz table.\n"
                     "Reply in the form ANSWER: <word>.\nThe weather today is mild.\n"
                     "If there is no true answer, reply ANSWER: UNSURE.\nQuestion: What is the capital of France?"}]


PARTS = "line 4, variants.honest.parts"


@pytest.mark.parametrize("body, where, says", [
    ("    parts:\n      - who: a\n      - who: b\n", PARTS, "part name 'who' appears twice"),
    ("    parts:\n      - who: a\n        why: b\n", PARTS, "must be one 'name: text' pair"),
    ("    parts:\n      - who: a\n    user: hi\n", "line 3, variants.honest", "either a user template or parts"),
    ("    parts: []\n", PARTS, "parts is empty"),
    ("    parts:\n      - 'bad name': a\n", PARTS, "may only use letters"),
    ("    parts:\n      - who: '   '\n", PARTS, "part 'who' is empty"),
    ("    parts:\n      - who: 3\n", "line 5, variants.honest.parts.0.who", "valid string"),
])
def test_a_malformed_parts_list_is_refused_naming_file_line_and_field(write, body, where, says):
    path = write("p.yaml", "task: t\nvariants:\n  honest:\n" + body)
    with pytest.raises(lab.PromptFileError) as err:
        lab.prompts.load_prompt(path)
    msg = str(err.value)
    assert str(path) in msg and where in msg and says in msg


def test_a_template_error_in_a_part_names_the_part(write):
    path = write("p.yaml", "task: t\nvariants:\n  honest:\n    parts:\n      - who: a\n      - q: '{{ question '\n")
    with pytest.raises(lab.PromptFileError, match=r"line 6: variants\.honest\.parts\.q: template syntax error"):
        lab.prompts.load_prompt(path)


# ---- generated variants -------------------------------------------------------------------------

def test_ablation_makes_one_variant_per_part_with_its_own_version(parts_prompt):
    pf = lab.prompts.load_prompt(parts_prompt)
    variants, removed, added = ablation_variants(pf, "honest", base="persona")
    # the question part uses the input, so it is kept unless named
    assert list(removed) == ["who", "format", "inert", "way_out"] == list(added)
    names = [v.name for v in variants]
    assert names == ["honest", "without-who", "without-format", "without-inert", "without-way_out", "persona",
                     "persona+who", "persona+format", "persona+inert", "persona+way_out"]
    assert len({v.version for v in variants}) == len(variants)
    without = {v.name: v for v in variants}["without-format"]
    text = without.render({"question": "Q?"})[0]["content"]
    assert "ANSWER: <word>" not in text and "Question: Q?" in text and "mild" in text
    plus = {v.name: v for v in variants}["persona+format"].render({"question": "Q?"})
    assert plus == [{"role": "system", "content": "You are a trivia champion."},
                    {"role": "user", "content": "Reply in the form ANSWER: <word>.\nQ?"}]


def test_ablating_a_variant_without_parts_or_an_unknown_part_is_refused(parts_prompt):
    pf = lab.prompts.load_prompt(parts_prompt)
    with pytest.raises(lab.PromptFileError, match="variant 'persona' has no named parts"):
        ablation_variants(pf, "persona")
    with pytest.raises(lab.ParameterError, match=r"\['tone'\] are not parts of variant 'honest'"):
        ablation_variants(pf, "honest", parts=["tone"])


def test_the_plan_and_its_cost_are_printed_before_any_call(parts_prompt, capsys, model_calls, run_log):
    result = lab.ablate(parts_prompt, INPUTS, variant="honest", model="scripted:planted", repeats=2, log=run_log,
                        dry_run=True)
    out = capsys.readouterr().out
    assert "100 calls (5 variants x 10 inputs x 1 models x 2 repeats)" in out
    assert "without-format" in out and "cost unknown" in out
    assert model_calls == [] and result.runs.empty


# ---- running and reading -------------------------------------------------------------------------

@pytest.fixture
def planted(parts_prompt, run_log):
    return lab.ablate(parts_prompt, INPUTS, variant="honest", base="persona", model="scripted:planted", repeats=4,
                      seed=3, log=run_log)


def test_every_ablated_variant_runs_on_the_same_inputs_repeats_and_seeds(planted):
    runs = planted.runs
    seeds = runs.groupby("variant").apply(lambda g: sorted(zip(g["input_id"], g["repeat"], g["seed"])))
    assert len(seeds) == 10 and all(s == seeds["honest"] for s in seeds)
    assert runs.groupby("variant")["prompt_version"].nunique().eq(1).all()
    assert runs["prompt_version"].nunique() == 10


def test_a_planted_necessary_part_shows_an_effect_and_an_inert_part_none(planted):
    eff = planted.effects()
    overall = eff[(eff["tag"] == "all")].set_index(["part", "measure"])
    assert overall.loc[("format", "correct"), "beyond_noise"]
    assert overall.loc[("format", "correct"), "change"] < -0.5
    assert not overall.loc[("inert", "correct"), "beyond_noise"]
    assert overall.loc[("inert", "correct"), "change"] == 0
    assert overall.loc[("way_out", "appropriate_escape"), "change"] < 0
    assert "removing format changes correct" in planted.verdict()
    added = planted.effects(added=True).set_index(["part", "measure", "tag"])
    assert added.loc[("format", "correct", "all"), "beyond_noise"]


def test_the_effects_table_matches_lab_stats_on_the_same_rows(planted):
    runs = planted.runs
    eff = planted.effects().set_index(["part", "measure", "tag"])
    d = lab.stats.paired_difference(runs, "without-format", "honest", value="passed", split_by_tag=True,
                                    higher_is_better=None)
    for tag, row in d.iterrows():  # read alone, the ablation's numbers are lab.stats' numbers
        got = eff.loc[("format", "correct", tag)]
        assert (got["change"], got["pairs"], got["inputs"]) == (row["difference"], row["pairs"], row["inputs"])
        assert got[["low_unadjusted", "high_unadjusted", "p_unadjusted"]].tolist() == pytest.approx(
            row[["low_unadjusted", "high_unadjusted", "p_unadjusted"]].tolist(), nan_ok=True)
    unans = runs[runs["input_tags"].map(lambda t: "unanswerable" in t)]
    d = lab.stats.paired_difference(unans, "without-way_out", "honest", value="escaped")
    got = eff.loc[("way_out", "appropriate_escape", "all")]
    assert got["change"] == d.loc[0, "difference"]
    assert got["low_unadjusted"] == pytest.approx(d.loc[0, "low"], nan_ok=True)


def test_changed_outputs_are_shown_side_by_side(planted):
    changed = planted.changed("format")
    assert len(changed) == 40  # every output loses its ANSWER: form
    row = changed.iloc[0]
    assert row["output_full"].startswith("ANSWER:") and row["output_without"].startswith("I think")
    assert planted.changed("inert").empty


def test_no_part_beyond_the_noise_is_said_plainly_with_the_inputs_needed(parts_prompt, run_log):
    scripted.SCRIPTS["coin"] = lambda m, p: "ANSWER: " + random.Random(p.get("seed")).choice(["Paris", "Rome"])
    result = lab.ablate(parts_prompt, INPUTS[:6], variant="honest", parts=["inert", "who"], model="scripted:coin",
                        repeats=1, seed=1, log=run_log)
    text = result.verdict()
    assert text.startswith("No part's removal changes any outcome rate beyond the noise over 6 inputs")
    assert re.search(r"about \d+ inputs x \d+ repeats? \(\d+ calls for the two variants", text), text


def test_the_figure_has_one_row_per_part_with_its_interval(planted):
    fig = planted.figure()
    trace = fig.data[0]
    assert list(trace.y) == ["who", "format", "inert", "way_out"]
    eff = planted.effects().query("measure == 'correct' and tag == 'all'")
    assert list(trace.x) == pytest.approx(list(100 * eff["change"]))
    assert list(trace.error_x.array) == pytest.approx(list(100 * (eff["high"] - eff["change"])))


def test_html_view_escapes_every_name(parts_prompt, run_log):
    result = lab.ablate(parts_prompt, INPUTS[:3], variant="honest", parts=["inert"], model="scripted:planted",
                        repeats=1, log=run_log)
    # names from a prompt file are plain, but an Ablation built in Python may carry any text
    result.removed = {"<script>x</script>": result.removed["inert"]}
    html = result._repr_html_()
    assert "<script>" not in html and "&lt;script&gt;x&lt;/script&gt;" in html


@pytest.mark.slow
def test_ablation_of_a_four_part_variant_on_the_local_model(write, run_log):
    path = write("four.yaml", """
task: four
escape_hatch: UNSURE
params: {temperature: 0.7, max_tokens: 8}
grader: {kind: match, mode: normalized, location: anywhere}
variants:
  honest:
    parts:
      - who: I'm checking a small model.
      - format: Answer in one word.
      - way_out: If you do not know, answer UNSURE.
      - extra: Be brief.
      - question: "Question: {{ question }}"
""")
    result = lab.ablate(path, INPUTS[:3], variant="honest", model="local:smollm2", repeats=2, seed=5, log=run_log)
    runs = result.runs
    assert sorted(set(runs["variant"])) == sorted(["honest", "without-who", "without-format", "without-way_out",
                                                    "without-extra"])
    assert runs["prompt_version"].nunique() == 5
    by_variant = runs.groupby("variant").apply(lambda g: sorted(zip(g["input_id"], g["repeat"], g["seed"])))
    assert all(s == by_variant["honest"] for s in by_variant)
    eff = result.effects().set_index(["part", "measure", "tag"])
    d = lab.stats.paired_difference(runs, "without-who", "honest", value="passed", split_by_tag=True,
                                    higher_is_better=None)
    assert eff.loc[("who", "correct", "all"), "change"] == d.loc["all", "difference"]


def test_four_inputs_are_too_few_to_tell_and_no_part_is_called_beyond_the_noise(parts_prompt, run_log):
    """The issue's case: with 4 inputs every part used to be "beyond the noise" with "+nan to +nan"."""
    result = lab.ablate(parts_prompt, INPUTS[:4], variant="honest", parts=["inert", "format"], model="scripted:planted",
                        repeats=2, seed=3, log=run_log)
    eff = result.effects()
    assert not eff["beyond_noise"].any() and (eff["verdict"] == "too few inputs to tell").all()
    text = result.verdict()
    assert text.startswith("Too few inputs to tell: 4 inputs (a verdict and an interval need 6)")
    for sentence in [text, *eff["reading"]]:
        assert "nan" not in sentence and "beyond the noise:" not in sentence


def test_parts_times_measures_are_one_family_adjusted_together(planted):
    eff = planted.effects(split_by_tag=False)
    members = eff["p_unadjusted"].notna()  # readings with too few inputs (2 unanswerable ones) have no test
    assert (eff.loc[members, "family"] == members.sum()).all() and members.sum() == 8
    # adjusted p-values are never smaller than the figures read alone, which stay available
    eff = eff[members]
    assert (eff["p_value"] >= eff["p_unadjusted"] - 1e-12).all()
    assert ((eff["low"] <= eff["low_unadjusted"] + 1e-12) & (eff["high"] >= eff["high_unadjusted"] - 1e-12)).all()
    # beyond the noise exactly when the adjusted interval excludes 0
    assert eff["beyond_noise"].tolist() == ((eff["low"] > 0) | (eff["high"] < 0)).tolist()
    text = planted.verdict()
    assert "Holm-adjusted over 8 readings: parts x measures" in text
    assert "removing format changes correct" in text and "removing inert" not in text


def test_the_report_headline_names_the_planted_part_with_its_interval(planted):
    headline = lab.report.answer(planted).headline
    assert headline.startswith("Over 10 inputs, ") and "removing format changes correct by -" in headline, headline
    assert "nan" not in headline and "+0 to" not in headline and "to -0)" not in headline, headline


def test_the_report_headline_on_one_input_is_counts_not_intervals(parts_prompt, run_log):
    one = lab.ablate(parts_prompt, INPUTS[:1], variant="honest", base="persona", model="scripted:planted", repeats=2,
                     seed=3, log=run_log)
    headline = lab.report.answer(one).headline
    assert headline == "Too few inputs to tell which part does the work: 1 input (a verdict and an interval need 6).", \
        headline
