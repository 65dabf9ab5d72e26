"""Confidence from token log-probabilities: recorded per run when asked for, calibration, selective
answering, probability of being right. Fast tests use a scripted provider that returns
log-probabilities; slow ones the local model, python -m llama_cpp.server and the Anthropic stub."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pandas as pd
import pytest

import lab
from lab import calibration as cal
from lab.logprobs import probability_of, summarize
from lab.providers import Completion, Provider, register_provider
from lab.providers.base import TokenLogprob
from tests.loopback import AnthropicServer

PROMPT = """
task: facts
escape_hatch: UNSURE
params: {temperature: 0.7, max_tokens: 8}
grader: {kind: match, mode: normalized, location: anywhere}
variants:
  honest:
    user: "Answer in one word; if you do not know, answer UNSURE. {{ question }}"
  persona:
    system: You are a trivia champion.
    user: "{{ question }}"
"""
INPUTS = [
    {"id": "france", "question": "Capital of France?", "expected": "Paris"},
    {"id": "italy", "question": "Capital of Italy?", "expected": "Rome"},
    {"id": "spider", "question": "Legs of a spider?", "expected": ["8", "eight"]},
    {"id": "nobody", "question": "Middle name of Harold Quenby?", "expected": "UNSURE", "tags": ["unanswerable"]},
]


def tok(token: str, p: float, *alts: tuple[str, float]) -> TokenLogprob:
    top = ((token, math.log(p)),) + tuple((t, math.log(q)) for t, q in alts)
    return TokenLogprob(token, math.log(p), top)


class LogprobProvider(Provider):
    """Answers like a small model that knows capitals, and says how sure it was."""

    returns_logprobs = True
    honours_seed = True
    supported_params = Provider.supported_params | {"logprobs", "top_logprobs"}
    calls: list[dict] = []

    async def complete(self, messages, params):
        LogprobProvider.calls.append(params)
        q = messages[-1]["content"]
        rnd = random.Random(params.get("seed"))
        if "France" in q:
            word, p = ("Paris", 0.9) if rnd.random() < 0.9 else ("Lyon", 0.1)
        elif "Italy" in q:
            word, p = ("Rome", 0.6) if rnd.random() < 0.6 else ("Milan", 0.4)
        elif "spider" in q:
            word, p = "8", 0.7
        else:
            word, p = ("UNSURE", 0.3) if "UNSURE" in q and rnd.random() < 0.3 else ("Bob", 0.5)
        alts = [("UN", 0.05), ("Paris", 0.02)] if word != "Paris" else [("UN", 0.05)]
        lps = (tok(" " + word, p, *alts), tok(".", 0.8)) if params.get("logprobs") else None
        return Completion(text=word + ".", input_tokens=5, output_tokens=2, logprobs=lps)


register_provider("lp", lambda model, rest, options: LogprobProvider(model))


@pytest.fixture
def prompt(write):
    return write("facts.yaml", PROMPT)


# ---- the record a run keeps ---------------------------------------------------------------------

def test_the_record_keeps_answer_first_token_and_escape_probabilities_and_stays_small():
    tokens = [tok("\n", 0.99), tok(" Par", 0.6, ("UN", 0.2), ("Rome", 0.1)), tok("is", 0.5), tok(" is", 0.9),
              tok(" nice", 0.9)] + [tok(" x", 0.9)] * 200
    rec = summarize(tokens, "UNSURE")
    assert rec["answer"] == " Paris"
    assert rec["p_answer"] == pytest.approx(0.6 * 0.5)
    assert rec["p_first"] == pytest.approx(0.6)
    assert rec["p_escape"] == pytest.approx(0.2)
    assert rec["n_tokens"] == 205 and len(rec["tokens"]) == 8
    assert rec["logprob_sum"] == pytest.approx(sum(t.logprob for t in tokens))
    assert len(json.dumps(rec)) < 1000


def test_an_escape_string_outside_the_top_alternatives_is_an_upper_bound_not_zero():
    rec = summarize([tok("Paris", 0.7, ("Rome", 0.2), ("Lyon", 0.05))], "UNSURE")
    assert rec["p_escape"] is None and rec["p_escape_max"] == pytest.approx(0.05)


def test_probability_of_a_single_token_answer_sums_the_matching_alternatives():
    rec = summarize([tok(" eight", 0.5, ("8", 0.3), ("six", 0.1))], "UNSURE")
    assert probability_of(rec, ["8", "eight"]) == pytest.approx(0.8)
    assert probability_of(rec, "UNSURE") == 0.0
    assert probability_of(None, "8") is None


# ---- recorded per run, opt-in -------------------------------------------------------------------

def test_confidence_is_off_by_default_and_recorded_per_run_when_asked(prompt, run_log):
    LogprobProvider.calls.clear()
    plain = lab.experiment(prompt, INPUTS, model="lp:x", seed=1, log=run_log).run().df
    assert plain["confidence"].isna().all() or all(r is None for r in plain["confidence"])
    assert not any("logprobs" in p for p in LogprobProvider.calls)
    df = lab.experiment(prompt, INPUTS, model="lp:x", seed=1, log=run_log, confidence=True).run().df
    assert all(p["logprobs"] is True and p["top_logprobs"] == 10 for p in df["params"])
    rec = df.set_index(["variant", "input_id"]).loc[("honest", "spider"), "confidence"]
    assert rec["answer"] == " 8" and rec["p_answer"] == pytest.approx(0.7) and rec["p_escape"] == pytest.approx(0.05)


def test_a_replayed_call_keeps_its_confidence_record(prompt, run_log):
    lab.experiment(prompt, INPUTS, model="lp:x", seed=1, log=run_log, confidence=True).run()
    again = lab.experiment(prompt, INPUTS, model="lp:x", seed=1, log=run_log, confidence=True, replay=True).run().df
    assert again["replayed_from"].notna().all()
    assert all(isinstance(r, dict) and r["p_answer"] > 0 for r in again["confidence"])


def test_a_model_without_logprobs_says_no_confidence_available_and_runs_as_usual(prompt, run_log, capsys):
    exp = lab.experiment(prompt, INPUTS, model=["scripted:echo", "lp:x"], seed=1, log=run_log, confidence=True)
    assert "scripted:echo: no confidence available" in capsys.readouterr().out
    runs = exp.run()
    df = runs.df
    assert (df["outcome"] != "error").all() and len(df) == 16
    avail = cal.availability(df)
    assert avail.loc["scripted:echo", "status"] == "no confidence available"
    assert avail.loc["lp:x", "status"] == "available"
    assert not any("logprobs" in c["params"] for c in df[df["model"] == "scripted:echo"].to_dict("records"))


# ---- calibration, selective answering, hallucinations ------------------------------------------

def synthetic(conf, correct, inputs=None, variant="v", tags=None, outcome="answered"):
    n = len(conf)
    return pd.DataFrame({
        "variant": variant, "model": "m", "role": "answer", "outcome": outcome,
        "input_id": inputs if inputs is not None else [f"i{k}" for k in range(n)],
        "input_tags": [list(tags) if tags else ["normal"]] * n,
        "confidence": [{"p_answer": c, "p_first": c} for c in conf], "passed": [float(y) for y in correct],
        "expected": None,
    })


def test_brier_and_ece_match_their_definitions_with_intervals_over_inputs():
    rng = np.random.default_rng(0)
    conf = rng.uniform(0, 1, 400)
    correct = rng.uniform(0, 1, 400) < conf  # calibrated by construction
    over = synthetic(np.clip(conf + 0.3, 0, 1), correct, variant="over")
    df = pd.concat([synthetic(conf, correct), over], ignore_index=True)
    table = cal.calibration(df, split_by_tag=False, bins=10)
    v = table.loc["v"]
    assert v["brier"] == pytest.approx(np.mean((conf - correct) ** 2))
    b = np.minimum((conf * 10).astype(int), 9)
    ece = sum((b == k).sum() / 400 * abs(conf[b == k].mean() - correct[b == k].mean()) for k in range(10) if (b == k).any())
    assert v["ece"] == pytest.approx(ece)
    assert v["brier_low"] <= v["brier"] <= v["brier_high"] and v["ece_low"] <= v["ece"] <= v["ece_high"]
    assert v["ece"] < 0.1 < table.loc["over", "ece_low"]  # over-confidence shows beyond the noise
    assert cal.calibration(df, split_by_tag=False).equals(table)  # seeded: the same numbers again


def test_intervals_resample_inputs_not_repeats():
    # 3 inputs x 50 identical repeats: 150 rows, but only 3 independent inputs
    conf = [0.9] * 50 + [0.9] * 50 + [0.9] * 50
    correct = [1] * 50 + [0] * 50 + [1] * 50
    inputs = ["a"] * 50 + ["b"] * 50 + ["c"] * 50
    wide = cal.calibration(synthetic(conf, correct, inputs=inputs), split_by_tag=False).iloc[0]
    narrow = cal.calibration(synthetic(conf, correct), split_by_tag=False).iloc[0]  # 150 distinct inputs
    assert wide["inputs"] == 3 and narrow["inputs"] == 150
    assert wide["brier_high"] - wide["brier_low"] > 3 * (narrow["brier_high"] - narrow["brier_low"])


def test_reliability_counts_answers_per_bin_with_intervals_over_inputs():
    df = synthetic([0.05, 0.15, 0.12, 0.95, 0.91, 0.99], [0, 0, 1, 1, 1, 0])
    rel = cal.reliability(df, bins=10).set_index("bin_low")
    assert list(rel["n"]) == [1, 2, 3]
    assert rel.loc[0.1, "accuracy"] == 0.5 and rel.loc[0.9, "accuracy"] == pytest.approx(2 / 3)
    assert rel[["low", "high"]].isna().all().all()  # 3 inputs or fewer in a bin: counts, no interval
    # 8 inputs x 10 answers at 0.5, each input all right or all wrong: the answers of one input are one
    # piece of evidence, so the bar is wide (a per-answer Wilson interval said [0.43, 0.57])
    conf = [0.55] * 80
    correct = [1] * 40 + [0] * 40
    inputs = [f"i{k // 10}" for k in range(80)]
    bar = cal.reliability(synthetic(conf, correct, inputs=inputs), bins=10).iloc[0]
    assert bar["inputs"] == 8 and bar["accuracy"] == 0.5
    assert bar["low"] < 0.25 and bar["high"] > 0.75
    assert lab.stats.proportion_ci(40, 80)[0] > 0.38  # what the per-answer interval would have claimed


def test_ece_is_read_next_to_what_a_calibrated_model_of_the_same_size_shows():
    """A perfectly calibrated model on 10 inputs x 1 answer used to read ECE 0.25 with an interval
    that never held the true 0. The corrected ECE is about 0, and its interval holds 0 most times."""
    rng = np.random.default_rng(5)
    held, corrected = 0, []
    for trial in range(40):
        conf = rng.uniform(0, 1, 10)
        correct = rng.uniform(0, 1, 10) < conf
        row = cal.calibration(synthetic(conf, correct), split_by_tag=False, n_resamples=400, seed=trial).iloc[0]
        assert row["ece"] > 0 and 0.15 < row["ece_calibrated"] < 0.4
        held += row["ece_corrected_low"] <= 0 <= row["ece_corrected_high"]
        corrected.append(row["ece_corrected"])
    assert held >= 34 and abs(np.mean(corrected)) < 0.05
    over = synthetic(np.full(200, 0.95), rng.uniform(0, 1, 200) < 0.5)  # says 95%, right half the time
    row = cal.calibration(over, split_by_tag=False).iloc[0]
    assert row["ece_corrected_low"] > 0.3


def test_selective_curve_trades_coverage_for_accuracy_and_the_hatch_is_a_point():
    answered = synthetic([0.9, 0.8, 0.3, 0.2], [1, 1, 0, 0], inputs=["a", "b", "c", "d"])
    escaped = synthetic([0.1], [1], inputs=["e"], tags=["unanswerable"], outcome="escaped")
    curve = cal.selective(pd.concat([answered, escaped], ignore_index=True))
    hatch = curve[curve["kind"] == "hatch"].iloc[0]
    assert hatch["coverage"] == pytest.approx(0.8) and hatch["accuracy"] == 0.5 and hatch["abstained_unanswerable"] == 1
    t = curve[curve["kind"] == "threshold"].set_index("threshold")
    assert t.loc[0.8, "coverage"] == pytest.approx(0.4) and t.loc[0.8, "accuracy"] == 1.0
    assert t.sort_values("coverage")["accuracy"].is_monotonic_decreasing


def test_confident_hallucinations_on_unanswerable_inputs_are_their_own_number():
    df = pd.concat([synthetic([0.9, 0.95, 0.2], [0, 0, 0], tags=["unanswerable"], inputs=["x", "y", "z"]),
                    synthetic([0.99], [1], inputs=["w"])], ignore_index=True)
    h = cal.confident_hallucinations(df, threshold=0.5).loc["v"]
    assert h["hallucinations"] == 3 and h["confident"] == pytest.approx(2 / 3)
    assert h["mean_confidence"] == pytest.approx((0.9 + 0.95 + 0.2) / 3)


def test_confidence_report_end_to_end_on_a_scripted_model(prompt, run_log):
    report = lab.confidence(prompt, INPUTS, model="lp:x", repeats=4, seed=2, log=run_log)
    table = report.calibration(split_by_tag=False)
    assert set(table.index) == {"honest", "persona"} and (table["n"] > 0).all()
    scores = report.scores()
    assert {"sampled_pass_rate", "p_correct"} <= set(scores.columns)
    # France: answered Paris with 0.9 -> p_correct 0.9 on every call whatever was sampled
    runs = report.runs
    france = runs[(runs["input_id"] == "france")]
    assert all(probability_of(r, "Paris") == pytest.approx(0.9 if r["answer"] == " Paris" else 0.02)
               for r in france["confidence"])
    assert len(report.reliability_figure().data) >= 2 and len(report.selective_figure().data) >= 2
    assert "no confidence available" not in report._repr_html_()


# ---- end to end ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_local_model_confidence_matches_llama_cpp_own_logprobs_for_the_same_call(prompt, run_log):
    from llama_cpp import Llama

    from lab.providers.local import bundled_model_path

    df = lab.experiment(prompt, INPUTS[:2], model="local:smollm2", variants=["honest"], seed=4, log=run_log,
                        confidence=True).run().df
    # llama.cpp itself, in this process (the lab's calls ran in its worker process)
    llm = Llama(model_path=str(bundled_model_path("smollm2")), n_ctx=4096, verbose=False, logits_all=True)
    for row in df.to_dict("records"):
        rec = row["confidence"]
        assert isinstance(rec, dict) and 0 < rec["p_answer"] <= 1
        own = llm.create_chat_completion(messages=row["messages"], **row["params"])
        content = own["choices"][0]["logprobs"]["content"]
        assert own["choices"][0]["message"]["content"] == row["output"]
        assert rec["logprob_sum"] == pytest.approx(sum(t["logprob"] for t in content), abs=1e-4)
        assert [t for t, _ in rec["tokens"]] == [t["token"] for t in content[:8]]
        assert len(rec["first"]) == 10


@pytest.mark.slow
def test_openai_compatible_llama_server_returns_and_stores_confidence(prompt, run_log, llama_server_url):
    df = lab.experiment(prompt, INPUTS[:2], model=f"openai-compatible:{llama_server_url}#smollm2",
                        variants=["honest"], seed=4, log=run_log, confidence=True).run().df
    assert (df["outcome"] != "error").all()
    for rec in df["confidence"]:
        assert isinstance(rec, dict) and 0 < rec["p_answer"] <= 1 and rec["first"]


@pytest.mark.slow
def test_anthropic_run_says_no_confidence_available(prompt, run_log, monkeypatch, capsys):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-key-0123456789")
    with AnthropicServer() as srv:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", srv.base_url)
        report = lab.confidence(prompt, INPUTS, model="anthropic:claude-loopback-1", repeats=1, log=run_log)
    assert "no confidence available" in capsys.readouterr().out
    assert report.no_confidence == ["anthropic:claude-loopback-1"]
    assert report.availability()["status"].tolist() == ["no confidence available"]
    assert "no confidence available" in report._repr_html_()
    assert report.calibration().empty and (report.runs["outcome"] != "error").all()


def test_probability_of_being_right_counts_only_one_word_answers():
    rec = {"first": [["The", math.log(0.6)], ["Paris", math.log(0.3)]]}
    df = pd.DataFrame({"variant": "v", "model": "m", "role": "answer", "outcome": "answered", "input_id": ["a", "b"],
                       "input_tags": [["normal"], ["normal"]], "expected": ["Paris", "Paris"],
                       "output": ["The capital is Paris.", "Paris."], "confidence": [rec, rec], "passed": [1.0, 1.0]})
    scores = cal.probability_scores(df).loc["v"]
    assert scores["n"] == 1 and scores["p_correct"] == pytest.approx(0.3) and scores["sampled_pass_rate"] == 1
