"""The committed example result notebook is made by the current code and reads like it: it opens
with a findings block that names a winner or says there is none, with n and intervals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import lab

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "results" / "examples" / "persona_vs_honest.ipynb"
SOURCE = ROOT / "notebooks" / "persona_vs_honest.ipynb"


def _code(nb: dict) -> list[str]:
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"
            and "injected-parameters" not in c.get("metadata", {}).get("tags", [])]


def _text(cell: dict) -> str:
    out = []
    for o in cell.get("outputs", []):
        if o.get("output_type") == "stream":  # the run's one progress line, printed before the answer
            continue
        data = o.get("data", {})
        out.append("".join(data.get("text/plain", o.get("text", ""))))
    return "\n".join(out)


def test_the_committed_example_was_made_from_the_current_notebook_and_opens_with_findings():
    example = json.loads(EXAMPLE.read_text())
    source = json.loads(SOURCE.read_text())
    assert _code(example) == _code(source), (
        "results/examples/persona_vs_honest.ipynb is older than notebooks/persona_vs_honest.ipynb; regenerate it "
        "with the command in results/examples/README.md")
    cell = next(c for c in example["cells"] if c["cell_type"] == "code" and "lab.findings" in "".join(c["source"]))
    text = _text(cell)
    assert text.startswith("Findings for example-persona-vs-honest")
    headline = text.splitlines()[1]
    assert any(w in headline for w in ("beats", "No detectable difference", "Too few inputs to tell")), headline
    assert "interval" in headline and "inputs" in headline
    assert "(n = " in text


@pytest.mark.slow
def test_findings_on_the_local_model_name_a_winner_or_none_and_match_lab_stats(run_log):
    cmp = lab.compare_framings("prompts/sentiment.yaml", "prompts/sentiment_inputs.yaml", variants=["honest", "persona"],
                               repeats=1, seed=7, params={"max_tokens": 16}, log=run_log)
    f = cmp.findings()
    assert f.grader == "match:default" and f.verdict is not None
    assert any(w in f.headline for w in ("beats", "No detectable difference", "Too few inputs to tell"))
    df = lab.findings.behaviour(lab.tables.with_grades(cmp.log.runs(experiment=cmp.experiment_id),
                                                cmp.log.grades(cmp.experiment_id), grader=cmp.grader))
    ref = lab.stats.paired_difference(df, "honest", "persona", value="appropriate").iloc[0]
    assert (f.verdict["difference"], f.verdict["low"], f.verdict["high"]) == pytest.approx(
        (ref["difference"], ref["low"], ref["high"]))
    assert f"{ref['low']:+.2f} to {ref['high']:+.2f}" in f.headline and f"{ref['inputs']} inputs" in f.headline
