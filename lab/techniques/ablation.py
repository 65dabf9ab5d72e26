"""Context ablation: which named part of a variant's context does the work?

A prompt file marks the parts of a variant's user message by name (``parts:``, see
:mod:`lab.prompts`). :func:`ablate` generates one variant per part with that part left out
(``without-<part>``) and, with ``base=``, one variant per part added to another variant such as
the persona (``<base>+<part>``). Each generated variant has its own version hash; all of them run
in one experiment on identical inputs, repeat indices and seeds as the full variant, so every
comparison is paired. The plan and its cost are printed before the first call.

The :class:`Ablation` it returns reads the log: per part, the paired change in the outcome rates
(correct, appropriate escape, over-abstention) from :func:`lab.stats.paired_difference`, split
by tag; the outputs that changed when a part was removed; a plain sentence when no part matters
beyond the noise, with the number of inputs a clearer answer would take.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Unpack

import pandas as pd

from ..config import PAIRED, RunConfig, RunOptions
from ..errors import ParameterError, PromptFileError
from ..experiments import Experiment
from ..graders import Grader
from ..grades import grade
from ..inputs import InputSet
from ..prompts import PromptFile, Variant, join_parts, version_of
from ..stats import MIN_INPUTS, TOO_FEW, Plan, adjust_family, format_p, interval_ends, paired_difference, plan, plural
from ..store import RunLog
from ..tables import with_grades
from ..text import normalize
from ._common import as_prompt, resolve_graders

#: the outcome rates an ablation compares: name -> (value column, which inputs count)
MEASURES = {
    "correct": ("passed", "all"),                     # the grader's verdict, on every input
    "appropriate_escape": ("escaped", "unanswerable"),  # escaping where there is no true answer
    "over_abstention": ("escaped", "answerable"),       # escaping where there is one
}
UNANSWERABLE = "unanswerable"


def _with_parts(v: Variant, name: str, parts: tuple[tuple[str, str], ...]) -> Variant:
    """``v`` with its user message rebuilt from ``parts`` (a new version)."""
    templates = tuple((role, src) for role, src in v.templates if role != "user") + (("user", join_parts(parts)),)
    return replace(v, name=name, templates=templates, parts=parts,
                   version=version_of(templates, v.params, v.escape_hatch), description=None)


def _add_part(base: Variant, part: tuple[str, str], name: str) -> Variant:
    """``base`` with one more part: put before its last user message (where context goes)."""
    templates = list(base.templates)
    idx = max(i for i, (role, _) in enumerate(templates) if role == "user")
    role, src = templates[idx]
    templates[idx] = (role, join_parts([part, ("_base", src)]))
    templates_t = tuple(templates)
    return replace(base, name=name, templates=templates_t, parts=(),
                   version=version_of(templates_t, base.params, base.escape_hatch), description=None)


def ablation_variants(prompt: PromptFile, variant: str, *, parts: list[str] | None = None,
                      base: str | None = None) -> tuple[list[Variant], dict[str, str], dict[str, str]]:
    """The full variant, one variant without each part and (with ``base``) ``base`` plus each part.

    ``parts`` picks the parts to ablate (default: every part that does not use the input's
    variables; without those the model never sees the question). Returns the variants in run
    order, ``{part: without-variant name}`` and ``{part: base+part variant name}``.
    """
    full = prompt.variant(variant)
    if not full.parts:
        raise PromptFileError(
            f"{prompt.path}: variant {variant!r} has no named parts; write its user message as "
            "'parts:' (a list of name: text) to ablate it (see docs/prompt-files.md)")
    names = [n for n, _ in full.parts]
    uses_input = {n for n, vars_ in full.part_variables().items() if vars_}
    if parts is None:
        chosen = [n for n in names if n not in uses_input]
    else:
        unknown = [p for p in parts if p not in names]
        if unknown:
            raise ParameterError(f"parts: {unknown} are not parts of variant {variant!r}; it has {names}")
        chosen = [n for n in names if n in parts]
    if not chosen:
        raise ParameterError(f"variant {variant!r}: no part to ablate (parts that use the input, {sorted(uses_input)},"
                             " are kept unless named in parts=)")
    out = [full]
    removed: dict[str, str] = {}
    for n in chosen:
        v = _with_parts(full, f"without-{n}", tuple(p for p in full.parts if p[0] != n))
        out.append(v)
        removed[n] = v.name
    added: dict[str, str] = {}
    if base is not None:
        b = prompt.variant(base)
        if b.name == full.name:
            raise ParameterError(f"base: {base!r} is the variant being ablated; name another (e.g. the persona)")
        out.append(b)
        for n in chosen:
            v = _add_part(b, next(p for p in full.parts if p[0] == n), f"{b.name}+{n}")
            out.append(v)
            added[n] = v.name
    return out, removed, added


def _plan_inputs(pilot: pd.DataFrame, a: str, b: str, difference: float, value: str) -> Plan:
    """How many inputs at how many repeats it would take to see ``difference`` (:func:`lab.stats.plan`)."""
    return plan(pilot, a, b, difference=difference, value=value)


@dataclass
class Ablation:
    """The runs of an ablation and what they say, read from the log (grades added later show up)."""

    experiment_id: str
    log: RunLog
    variant: str
    removed: dict[str, str]
    added: dict[str, str] = field(default_factory=dict)
    base: str | None = None
    grader: str | None = None
    confidence: float = 0.95

    @property
    def parts(self) -> list[str]:
        return list(self.removed)

    @property
    def runs(self) -> pd.DataFrame:
        """The experiment's answers with ``passed`` / ``score`` from the grader (NaN without one)."""
        return with_grades(self.log.runs(experiment=self.experiment_id), self.log.grades(self.experiment_id),
                           grader=self.grader)

    def _measures(self, runs: pd.DataFrame) -> list[str]:
        names = []
        for m, (value, which) in MEASURES.items():
            if value == "passed" and not runs["passed"].notna().any():
                continue  # no grader: nothing says "correct"
            unans = runs["input_tags"].map(lambda t: UNANSWERABLE in (t or []))
            if which == "unanswerable" and not unans.any() or which == "answerable" and unans.all():
                continue
            names.append(m)
        return names

    @staticmethod
    def _rows_for(runs: pd.DataFrame, which: str) -> pd.DataFrame:
        unans = runs["input_tags"].map(lambda t: UNANSWERABLE in (t or []))
        if which == "unanswerable":
            return runs[unans]
        if which == "answerable":
            return runs[~unans]
        return runs

    def effects(self, *, split_by_tag: bool = True, added: bool = False) -> pd.DataFrame:
        """Per part and measure: the paired change in the rate when the part is removed
        (``without - full``; with ``added=True``: ``base+part - base``), from
        :func:`lab.stats.paired_difference` over the same (input, repeat) pairs, overall (tag
        ``all``) and per input tag.

        The readings are a family ("which parts matter?" asks every part about every measure at
        once): the overall rows are Holm-adjusted together, and so are the per-tag rows; ``low``,
        ``high``, ``p_value`` and ``beyond_noise`` are the adjusted figures (an interval drawn at its
        Holm level, so ``beyond_noise`` is exactly "the interval excludes 0"), ``p_unadjusted``,
        ``low_unadjusted`` and ``high_unadjusted`` the figures read alone, ``family`` the number of
        readings adjusted together. Below ``lab.stats.MIN_INPUTS`` inputs a reading is
        ``too few inputs to tell`` (no interval, never beyond the noise). Columns: part, measure, tag,
        pairs, inputs, rate_full (or rate_base), rate_changed, change, low, high, p_value, verdict,
        p_unadjusted, low_unadjusted, high_unadjusted, family, beyond_noise, reading."""
        runs = self.runs
        pairs = self.added if added else self.removed
        ref = self.base if added else self.variant
        if added and not pairs:
            raise ParameterError("this ablation has no add-one variants; run lab.ablate(..., base='persona')")
        assert ref is not None  # added=True has a base (no pairs otherwise)
        rows, calls = [], []
        for measure in self._measures(runs):
            value, which = MEASURES[measure]
            sub = self._rows_for(runs, which)
            for part, name in pairs.items():
                def read(confidence: float, sub=sub, name=name, value=value) -> pd.DataFrame:
                    d = paired_difference(sub, name, ref, value=value, split_by_tag=split_by_tag,
                                          higher_is_better=None, confidence=confidence)
                    return d.reset_index() if split_by_tag else d.assign(tag="all")
                for _, r in read(self.confidence).iterrows():
                    rows.append({"part": part, "measure": measure, "tag": r["tag"], "pairs": int(r["pairs"]),
                                 "inputs": int(r["inputs"]),
                                 "rate_base" if added else "rate_full": r["mean_b"], "rate_changed": r["mean_a"],
                                 "change": r["difference"], "low": r["low_unadjusted"], "high": r["high_unadjusted"],
                                 "p_value": r["p_unadjusted"], "verdict": r["verdict_unadjusted"]})
                    calls.append(read)
        for tags in ("all", "by tag"):
            family = [i for i, r in enumerate(rows) if (r["tag"] == "all") == (tags == "all")]
            adjust_family(rows, family, lambda i, level: self._again(calls[i], rows[i]["tag"], 1 - level),
                          self.confidence)
        for r in rows:
            r["beyond_noise"] = r["verdict"] in ("A higher", "B higher")
            r["reading"] = self._reading(r, added)
        cols = ["part", "measure", "tag", "pairs", "inputs", "rate_base" if added else "rate_full", "rate_changed",
                "change", "low", "high", "p_value", "verdict", "p_unadjusted", "low_unadjusted", "high_unadjusted",
                "family", "beyond_noise", "reading"]
        return pd.DataFrame(rows, columns=cols)

    @staticmethod
    def _again(read, tag: str, confidence: float) -> dict[str, Any]:
        """One reading redrawn at ``confidence`` (its Holm level): interval and verdict read alone."""
        r = read(confidence).set_index("tag").loc[tag]
        return {"low": r["low_unadjusted"], "high": r["high_unadjusted"], "verdict": r["verdict_unadjusted"]}

    def _reading(self, r: dict[str, Any], added: bool) -> str:
        what = r["measure"].replace("_", " ")
        act = f"adding {r['part']} to {self.base}" if added else f"removing {r['part']}"
        where = "" if r["tag"] == "all" else f" on inputs tagged {r['tag']}"
        n = f"{plural(r['inputs'], 'input')}, {plural(r['pairs'], 'pair')}"
        if not r["pairs"]:
            return f"{act}: no pairs with a {what} value{where}"
        if r["verdict"] == TOO_FEW:
            return (f"{act}: {what} changes by {r['change'] + 0.0:+.2f}{where} over {n}; too few inputs to tell "
                    f"(a verdict and an interval need {MIN_INPUTS})")
        lo, hi = interval_ends(r["low"], r["high"], 2)
        how = "; ".join(x for x in (format_p(r["p_value"]),
                                    f"Holm-adjusted over {r['family']} readings" if r["family"] > 1 else "") if x)
        said = "beyond the noise" if r["beyond_noise"] else "within the noise"
        return (f"{act} changes {what} by {r['change'] + 0.0:+.2f}{where} ({self.confidence:.0%} interval {lo} to "
                f"{hi}; {how}; {n}): {said}")

    def changed(self, part: str, *, on: str = "answer") -> pd.DataFrame:
        """Outputs that changed when ``part`` was removed, side by side: one row per (input, repeat)
        with the full variant's and the ablated variant's output, outcome and grade. ``on``:
        ``answer`` (normalized text differs), ``outcome`` or ``passed``."""
        if part not in self.removed:
            raise ParameterError(f"changed: {part!r} is not an ablated part; parts: {self.parts}")
        if on not in ("answer", "outcome", "passed"):
            raise ParameterError(f"changed: on must be 'answer', 'outcome' or 'passed', got {on!r}")
        runs = self.runs
        keys = ["input_id", "repeat", "model"]
        cols = ["output", "outcome", "passed"]
        full = runs[runs["variant"] == self.variant][keys + cols + ["input_vars", "input_tags"]]
        cut = runs[runs["variant"] == self.removed[part]][keys + cols]
        both = full.merge(cut, on=keys, suffixes=("_full", "_without"), how="inner").set_index(keys)
        if on == "answer":
            differs = both["output_full"].map(normalize) != both["output_without"].map(normalize)
        else:
            differs = both[f"{on}_full"].astype(str) != both[f"{on}_without"].astype(str)
        out = both[differs].reset_index()
        out.insert(3, "input", out.pop("input_vars").map(
            lambda v: "; ".join(f"{k}={x}" for k, x in v.items()) if isinstance(v, dict) else ""))
        out.insert(4, "tags", out.pop("input_tags").map(lambda t: ", ".join(t or [])))
        return out

    def verdict(self) -> str:
        """A plain statement: which parts' removal changes an outcome rate beyond the noise (read as
        one Holm-adjusted family of parts x measures), that none does, or that there are too few
        inputs to tell, with how many inputs it would take to tell a 10-point change."""
        eff = self.effects(split_by_tag=False)
        if eff.empty:
            return "nothing to compare yet: no graded or escape outcomes in this ablation's runs"
        n_inputs = int(self.runs["input_id"].nunique())
        fam = int(eff["family"].max())
        family = f" (Holm-adjusted over {fam} readings: parts x measures)" if fam > 1 else ""
        hits = eff[eff["beyond_noise"]]
        if not hits.empty:
            said = "; ".join("removing {} changes {} by {:+.2f} ({:.0%} interval {} to {})".format(
                r.part, r.measure.replace("_", " "), r.change + 0.0, self.confidence, *interval_ends(r.low, r.high, 2))
                for r in hits.itertuples())
            return f"Beyond the noise over {plural(n_inputs, 'input')}{family}: {said}."
        if (eff["verdict"] == TOO_FEW).all():
            return (f"Too few inputs to tell: {plural(n_inputs, 'input')} (a verdict and an interval need "
                    f"{MIN_INPUTS}); no part's effect can be told from the noise yet.{self._needed(eff)}")
        return (f"No part's removal changes any outcome rate beyond the noise over {plural(n_inputs, 'input')}"
                f"{family} ({self.confidence:.0%} intervals all include 0).{self._needed(eff)}")

    def _needed(self, eff: pd.DataFrame) -> str:
        """How many inputs x repeats would tell a 0.10 change (lab.stats.plan on the narrowest reading)."""
        measure = eff.assign(w=(eff["high"] - eff["low"]).fillna(math.inf)).sort_values("w").iloc[0]
        value, which = MEASURES[measure["measure"]]
        sub = self._rows_for(self.runs, which)
        try:
            needed = _plan_inputs(sub, self.removed[measure["part"]], self.variant, 0.1, value).recommended
        except ParameterError:
            return ""
        return (f" To tell a change of 0.10 in {measure['measure'].replace('_', ' ')} from the noise: "
                f"about {plural(needed.inputs, 'input')} x {plural(needed.repeats, 'repeat')} "
                f"({needed.calls} calls for the two variants; "
                "lab.stats.plan says when more repeats cannot help).")

    def figure(self, measure: str | None = None, *, tag: str = "all"):
        """One row per part: the paired change in ``measure`` when it is removed, with its interval
        (:func:`lab.plots.ablation_effects`)."""
        from ..plots import ablation_effects

        eff = self.effects()
        if measure is None:
            present = list(dict.fromkeys(eff["measure"]))
            measure = "correct" if "correct" in present else (present[0] if present else "correct")
        return ablation_effects(eff, measure=measure, tag=tag, variant=self.variant, confidence=self.confidence)

    def _repr_html_(self) -> str:
        esc = html.escape
        eff = self.effects(split_by_tag=False)
        table = eff.drop(columns=["reading"]).to_html(index=False, float_format=lambda x: f"{x:+.3f}", escape=True)
        added = ""
        if self.added:
            added = f"; added to {esc(str(self.base))}: {esc(', '.join(self.added))}"
        return (f"<p><b>{esc(self.experiment_id)}</b>: ablation of {esc(self.variant)}, parts "
                f"{esc(', '.join(self.parts))}{added}; grader {esc(str(self.grader))}</p>"
                f"<p>{esc(self.verdict())}</p>{table}")

    def __repr__(self) -> str:
        return f"Ablation({self.experiment_id!r}, variant={self.variant!r}, parts={self.parts})"


def plan_text(exp: Experiment, removed: dict[str, str], added: dict[str, str]) -> str:
    """What an ablation will run and what it costs, said before any call (the plan is not built)."""
    lines = [f"Ablation plan {exp.id}: {exp.describe()}"]
    for v in exp.variants:
        lines.append(f"  {v.name:<28} version {v.version}")
    lines.append(f"  cost grows with parts x inputs x repeats: {len(removed)} part(s) left out"
                 + (f", {len(added)} added to the base" if added else ""))
    return "\n".join(lines)


def ablate(prompt: str | Path | PromptFile, inputs: str | Path | InputSet | list[dict] | None = None, *,
           variant: str, parts: list[str] | None = None, base: str | None = None,
           grader: Grader | list[Grader] | None = None, log: RunLog | str | Path | None = None,
           tags: list[str] | None = None, id: str | None = None, dry_run: bool = False,
           config: RunConfig | None = None, **run: Unpack[RunOptions]) -> Ablation:
    """Leave each named part of ``variant`` out in turn (and, with ``base``, add each to ``base``),
    run every generated variant on the same inputs, repeats and seeds as ``variant``, grade them,
    and return an :class:`Ablation`.

    The plan (variants, versions, calls, cost) is printed first; ``dry_run=True`` stops there
    (the returned Ablation then has no runs). ``seed`` defaults to 0 so that all variants share
    seeds. ``grader`` defaults to the prompt file's ``grader:``.
    """
    cfg = RunConfig.of(config, defaults=PAIRED, **run)
    pf = as_prompt(prompt)
    graders = resolve_graders(grader, pf)
    chosen, removed, added = ablation_variants(pf, variant, parts=parts, base=base)
    ablated = PromptFile(path=pf.path, task=pf.task, description=pf.description,
                         variants={v.name: v for v in chosen}, grader=pf.grader)
    exp = Experiment(ablated, inputs, log=log, tags=tags, id=id, name=f"{pf.task}-ablation", config=cfg)
    print(plan_text(exp, removed, added))
    result = Ablation(exp.id, exp.log, variant, removed, added, base, graders[-1].name if graders else None)
    if dry_run:
        return result
    runs = exp.run()
    if graders:
        grade(runs, graders)
    return result
