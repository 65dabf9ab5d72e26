"""Ask a model to propose new edge cases for a prompt, for a person to review before any of them
joins an input set. Nothing is added to a set automatically."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from ..checks import check_int
from ..config import DEFAULT_MODEL
from ..errors import InputSetError, ParameterError
from ..inputs import InputRow, InputSet, load_inputs, rows_from_records
from ..names import experiment_id, html_text
from ..prompts import PromptFile
from ..providers import get_provider
from ..runner import Call, Runner, run_sync
from ..seeds import base_seed, seeded
from ..store import RunLog
from ..text import fill
from ._common import adhoc_variant, as_prompt, open_log

PROPOSE_TEMPLATE = """I am testing a prompt for a language model before I rely on it. This is the prompt; \
{placeholders} filled in from each input:
<<<
{template}
>>>
{examples}
Write {n} new inputs that could make this prompt go wrong: an empty or one-word input, a very long one, \
another language such as Korean, text that is not what the prompt expects, instructions hidden inside the text, \
a question with no true answer (an unknown person, a future event), letter counting, comparing 9.11 and 9.9, \
several steps of arithmetic. {format}"""

_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)]|\(\d+\))\s*")


def _parse(text: str, variables: list[str]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for line in (text or "").splitlines():
        line = _BULLET.sub("", line).strip()
        if not line:
            continue
        if len(variables) == 1:
            value = line.strip().strip('"').strip("'").strip()
            if value and not value.lower().startswith(("here are", "sure", "input")):
                found.append({variables[0]: value})
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict) and set(variables) <= set(obj):
            found.append({v: obj[v] for v in variables})
    return found


@dataclass
class ProposedEdgeCases:
    """Edge cases a model proposed, in input-set shape, for review. ``df`` has one row per case:
    ``id``, ``tags`` (``edge``, ``proposed``), the template variables, ``notes`` and ``source_run``."""

    df: pd.DataFrame
    experiment_id: str
    log: RunLog
    variables: list[str]

    def records(self) -> list[dict[str, Any]]:
        """The cases as input-set rows (``id``, ``tags``, variables, ``notes``)."""
        out = []
        for _, r in self.df.iterrows():
            row = {"id": r["id"], "tags": list(r["tags"]), **{v: r[v] for v in self.variables}, "notes": r["notes"]}
            out.append(row)
        return out

    def to_yaml(self) -> str:
        """The cases as input-set YAML, to read, edit and paste into a set."""
        return yaml.safe_dump(self.records(), allow_unicode=True, sort_keys=False, width=100)

    def to_input_set(self) -> InputSet:
        """The cases as an in-memory input set, to try them before adding any to a file."""
        if self.df.empty:
            raise InputSetError("no proposed cases to turn into an input set")
        return rows_from_records(self.records(), name=f"proposed by {self.experiment_id}")

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the cases to a review file (YAML). Refuses to overwrite an existing file unless
        ``overwrite=True``; merging into a real input set is left to the reviewer."""
        p = Path(path)
        if p.exists() and not overwrite:
            raise InputSetError(f"{p}: exists; proposals go to a new review file (or pass overwrite=True)")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("# Proposed edge cases: review, edit, and move the good ones into an input set.\n"
                     + self.to_yaml(), encoding="utf-8")
        return p

    def _repr_html_(self) -> str:
        return f"<p>{len(self.df)} proposed edge case(s) from <b>{html_text(self.experiment_id)}</b> (not added to any set)</p>" \
            + self.df.to_html()


def propose_edge_cases(prompt: str | Path | PromptFile, *, variant: str | None = None, n: int = 5,
                       model: str = DEFAULT_MODEL, examples: str | Path | InputSet | None = None,
                       samples: int = 1, params: dict[str, Any] | None = None, seed: int | None = None,
                       log: RunLog | str | Path | None = None, id: str | None = None) -> ProposedEdgeCases:
    """Ask ``model`` for ``n`` inputs likely to break ``prompt`` (one variant; default the first).

    ``examples`` (an input set) shows a few existing rows so proposals differ from them;
    ``samples`` makes that many independent calls. Each call is a logged run with role
    ``propose``. With one template variable the model writes one input per line; with several,
    one JSON object per line (lines that do not parse are dropped). The result is for review:
    see :meth:`ProposedEdgeCases.save` and :meth:`ProposedEdgeCases.to_input_set`.
    """
    check_int("n", n, 1)
    check_int("samples", samples, 1)
    pf = as_prompt(prompt)
    v = pf.variant(variant) if variant else next(iter(pf.variants.values()))
    variables = sorted(v.variables)
    if not variables:
        raise ParameterError(f"{pf.path}: variant {v.name!r} uses no template variable; there is no input to vary")
    call_params = {"temperature": 0.9, "max_tokens": 256, **(params or {})}
    get_provider(model).check_params({**call_params, "seed": 0})
    ex = examples if isinstance(examples, InputSet) or examples is None else load_inputs(examples)
    ex_text = ""
    if ex is not None:
        shown = [r.vars for r in list(ex)[:5]]
        ex_text = "\nSome inputs I already have:\n" + "\n".join(json.dumps(s, ensure_ascii=False) for s in shown) + "\n"
    template = "\n".join(f"[{role}] {src}" for role, src in v.templates)
    placeholders = ", ".join("{{ " + x + " }}" for x in variables) + (" is" if len(variables) == 1 else " are")
    fmt = ("Write one input per line, with no numbering and no commentary." if len(variables) == 1 else
           f"Write one JSON object per line with the keys {variables}, and nothing else.")
    content = fill(PROPOSE_TEMPLATE, placeholders=placeholders, template=template, examples=ex_text, n=str(n),
                   format=fmt)
    log = open_log(log)
    exp = id or experiment_id(f"{pf.task}-edge-cases")
    seed = base_seed(seed)
    pseudo = adhoc_variant(f"propose:{v.name}", pf.task, None, call_params)
    row = InputRow(id="propose", vars={"prompt": pf.path, "variant": v.name})
    calls = []
    for i in range(samples):
        p, s = seeded(call_params, seed, "propose", i)
        calls.append(Call(model=model, messages=[{"role": "user", "content": content}], params=p, repeat=i, seed=s,
                          seed_chosen_by_user=True, variant=pseudo, row=row, role="propose"))
    log.add_experiment(exp, name="propose-edge-cases", prompt_path=pf.path, inputs_path=None, models=[model],
                       variants=[pseudo.name], repeats=samples, params={"n": n, "variant": v.name, "seed": seed})

    async def go() -> list[Any]:
        runner = Runner(log, exp)
        try:
            return [await runner.call(c) for c in calls]
        finally:
            await runner.aclose()

    records = run_sync(go)
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for rec in records:
        for case in _parse(rec.output or "", variables):
            k = json.dumps(case, sort_keys=True, ensure_ascii=False)
            if k in seen:
                continue
            seen.add(k)
            rows.append({"id": f"proposed-{len(rows) + 1}", "tags": ("edge", "proposed"), **case,
                         "notes": f"proposed by {model}; review before use", "source_run": rec.id})
    df = pd.DataFrame(rows, columns=["id", "tags", *variables, "notes", "source_run"])
    return ProposedEdgeCases(df, exp, log, variables)
