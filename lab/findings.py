"""Findings: what an experiment's log says, in plain words a reader can trust.

    f = lab.findings.from_log(log, exp.id)         # or findings(runs_df, grades_df)
    print(f)                                       # text (the CLI prints this after run and show)
    f                                              # HTML in a notebook (names escaped)

Computed only from the log's runs and grades, through ``lab.stats`` (intervals over inputs). Per
framing: appropriate behaviour (the correct answer where there is one, the way out where there is
none), correct on answerable inputs, escaped on unanswerable ones, over-abstention (escaped on
answerable) and hallucination (answered on unanswerable), each with its interval and n (inputs x
repeats); the paired verdict A - B with its interval; the input tags that drive it; and the caveats
that apply (too few inputs, ungraded runs, unparsed judge grades, errors, the default grader).
Raw escape rates are compared as higher / lower, never better.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from .graders import DEFAULT_GRADER, DEFAULT_GRADER_NOTE
from .stats import MIN_INPUTS, TOO_FEW, Population, format_p, interval_ends, paired_difference, plural, rate_text, rates
from .tables import UNPARSED_WARN_SHARE, unparsed_share, with_grades

MEASURES = {  # column -> (words, rows it is over)
    "appropriate": "appropriate behaviour",
    "correct_answerable": "correct on answerable",
    "escaped_unanswerable": "escaped on unanswerable",
    "over_abstention": "over-abstention (escaped on answerable)",
    "hallucination": "answered on unanswerable",
}


def behaviour(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` (runs with ``passed`` from :func:`lab.tables.with_grades`) with one 0/1 column per
    measure (NaN where a measure does not apply to the run, or it is ungraded)."""
    out = df.copy()
    unans = out["input_tags"].map(lambda t: "unanswerable" in (list(t) if t is not None else []))
    escaped = (out["outcome"] == "escaped").astype(float)
    answered = (out["outcome"] == "answered").astype(float)
    passed = out["passed"] if "passed" in out else pd.Series(math.nan, index=out.index)
    nan = float("nan")
    out["correct_answerable"] = passed.where(~unans, nan)
    out["over_abstention"] = escaped.where(~unans, nan)
    out["escaped_unanswerable"] = escaped.where(unans, nan)
    out["hallucination"] = answered.where(unans, nan)
    out["appropriate"] = passed.where(~unans, escaped)
    err = out["outcome"] == "error"
    for col in MEASURES:
        out.loc[err, col] = nan
    return out


def _fmt_rate(r: pd.Series) -> str:
    """One measure's rate with its n (inputs x repeats), or its counts when there is no interval."""
    if r["n"] == 0 or pd.isna(r["rate"]):
        return "n/a"
    return rate_text(int(r["k"]), int(r["n"]), int(r["inputs"]), float(r["rate"]), float(r["low"]), float(r["high"]))


def _rate_row(r: pd.Series, m: str) -> pd.Series:
    return pd.Series({k: r[f"{m}_{k}" if k != "rate" else m] for k in ("rate", "low", "high", "n", "k", "inputs")})


def _ci(v: dict[str, Any], confidence: float) -> str:
    """The interval and the test behind a verdict, in the words a headline uses."""
    how = "; ".join(x for x in (format_p(v.get("p_value", math.nan)), v.get("method") or "") if x)
    ci = "{:.0%} interval {} to {}".format(confidence, *interval_ends(v["low"], v["high"], 2))
    if v["low"] == v["high"]:
        how += "; every input gave the same difference"
    return ci + (f"; {how}" if how else "")


@dataclass
class Findings:
    """The findings block: build it with :func:`findings` or :func:`from_log`."""

    experiment_id: str | None
    a: str | None
    b: str | None
    grader: str | None
    confidence: float
    per_framing: pd.DataFrame  # index variant; columns <measure>, <measure>_low/_high/_n, inputs, repeats, calls
    verdict: dict[str, Any] | None  # the paired difference row (all inputs) for the headline value
    verdict_value: str | None
    escapes: dict[str, Any] | None  # the paired difference in raw escape rates (higher / lower)
    by_tag: pd.DataFrame | None
    drivers: list[str] = field(default_factory=list)
    caveats: list[str] = field(default_factory=list)

    @property
    def headline(self) -> str:
        """One sentence: who won, or that nobody did (or that it cannot be told)."""
        if self.verdict is None:
            if self.a and self.b:
                return (f"No verdict between {self.a} and {self.b}: no graded pairs "
                        "(grade the runs, or give the inputs expected answers).")
            return "One framing only: nothing to compare."
        v = self.verdict
        what = {**MEASURES, "passed": "pass rate"}.get(self.verdict_value or "", self.verdict_value)
        diff = f"{self.a} - {self.b} = {v['difference'] + 0.0:+.2f}"
        n = f"{plural(v['inputs'], 'input')}, {plural(v['pairs'], 'pair')}"
        if v["verdict"] == TOO_FEW:
            return (f"Too few inputs to tell ({plural(v['inputs'], 'input')}; a verdict and an interval need "
                    f"{MIN_INPUTS}): {what} {diff} over {n}.")
        ci = _ci(v, self.confidence)
        if v["verdict"] in ("A better", "B better"):
            win, lose = (self.a, self.b) if v["verdict"] == "A better" else (self.b, self.a)
            where = f"on these {plural(v['inputs'], 'input')}" if v.get("population") == "these" else f"over {n}"
            return f"{win} beats {lose} on {what}: {diff} ({ci}; {where})."
        return f"No detectable difference in {what} between {self.a} and {self.b}: {diff} ({ci}; {n})."

    def lines(self) -> list[str]:
        head = f"Findings for {self.experiment_id}" if self.experiment_id else "Findings"
        out = [head + (f" (grader {self.grader})" if self.grader else " (ungraded)"), self.headline]
        if self.escapes is not None and self.escapes["pairs"]:
            e = self.escapes
            if e["verdict"] in ("A higher", "B higher"):
                hi, lo = (self.a, self.b) if e["verdict"] == "A higher" else (self.b, self.a)
                out.append(f"Escapes: {hi} escapes more often than {lo} ({self.a} - {self.b} = {e['difference'] + 0.0:+.2f}, "
                           f"{_ci(e, self.confidence)}); higher, not better: see the rates by input kind.")
            else:
                out.append(f"Escapes: {e['reading']}.")
        out.append(f"Per framing ({self.confidence:.0%} intervals over inputs; n = inputs x repeats):")
        for name, r in self.per_framing.iterrows():
            parts = [f"{MEASURES[m]} {_fmt_rate(_rate_row(r, m))}" for m in MEASURES if r[m + "_n"] > 0]
            out.append(f"  {name} (n = {int(r['inputs'])} x {r['repeats']:g}): " + "; ".join(parts))
        if self.drivers:
            out.append("Driven by: " + "; ".join(self.drivers))
        if self.caveats:
            out.append("Caveats:")
            out += [f"  - {c}" for c in self.caveats]
        return out

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        e = html.escape
        lines = self.lines()
        table = pd.DataFrame({
            MEASURES[m]: [_fmt_rate(_rate_row(r, m)) for _, r in self.per_framing.iterrows()] for m in MEASURES})
        sizes = [f"{int(r['inputs'])} x {r['repeats']:g}" for _, r in self.per_framing.iterrows()]
        table.insert(0, "n (inputs x repeats)", sizes)
        table.index = [str(i) for i in self.per_framing.index]
        rows = "".join(f"<tr><th>{e(str(i))}</th>" + "".join(f"<td>{e(str(v))}</td>" for v in row) + "</tr>"
                       for i, row in table.iterrows())
        head = "<tr><th></th>" + "".join(f"<th>{e(c)}</th>" for c in table.columns) + "</tr>"
        extra = [ln for ln in lines[2:] if not ln.startswith("  ") and not ln.startswith("Per framing")
                 and ln != "Caveats:"]
        caveats = "".join(f"<li>{e(c)}</li>" for c in self.caveats)
        return (f"<div class='lab-findings'><p><b>{e(lines[0])}</b></p><p><b>{e(self.headline)}</b></p>"
                + "".join(f"<p>{e(x)}</p>" for x in extra if not x.startswith("  -"))
                + f"<table>{head}{rows}</table>"
                + (f"<p>Caveats:</p><ul>{caveats}</ul>" if caveats else "") + "</div>")


def _drivers(by_tag: pd.DataFrame, verdict: dict[str, Any] | None, a: str, b: str, confidence: float) -> list[str]:
    """Which tags drive the verdict: the tag readings are one family, Holm-adjusted (one clause says so)."""
    if len(by_tag) < 2:
        return []
    fam = int(by_tag["family"].max()) if "family" in by_tag else 1
    adjusted = f"Holm-adjusted over {fam} tags" if fam > 1 else "one tag with a verdict"
    out = [f"tag {tag}: {a} - {b} = {row['difference'] + 0.0:+.2f} ({' to '.join(interval_ends(row['low'], row['high'], 2))}, "
           f"{plural(row['inputs'], 'input')}; {adjusted})"
           for tag, row in by_tag.iterrows() if row["verdict"] in ("A better", "B better")]
    if verdict and verdict["verdict"] in ("A better", "B better") and not out:
        sign = 1 if verdict["difference"] > 0 else -1
        ranked = by_tag[by_tag["pairs"] > 0]
        if len(ranked):
            top = ranked.assign(_d=sign * ranked["difference"]).sort_values("_d", ascending=False).iloc[0]
            out.append(f"mostly tag {top.name}: {a} - {b} = {top['difference'] + 0.0:+.2f} over "
                       f"{plural(top['inputs'], 'input')} (no tag is a verdict on its own"
                       + (f" after Holm adjustment over {fam} tags)" if fam > 1 else ")"))
    return out


def findings(runs: pd.DataFrame, grades: pd.DataFrame | None = None, *, a: str | None = None, b: str | None = None,
             grader: str | None = None, confidence: float = 0.95, population: Population = "inputs",
             experiment_id: str | None = None) -> Findings:
    """The findings block for ``runs`` (as ``log.runs(...)`` returns them) and their ``grades``.

    ``a`` and ``b`` are the framings to compare (default: the first two variants in the runs); the
    verdict is about appropriate behaviour when some inputs are tagged ``unanswerable``, else about
    the pass rate. ``population="these"`` reads about exactly these inputs."""
    df = runs[runs["role"].fillna("answer").isin(["answer", "revision"])] if "role" in runs else runs
    if "role" in df and (df["role"] == "revision").any():  # a self-critique: read the first answers' framings
        df = df[df["role"].fillna("answer") == "answer"]
    df = with_grades(df, grades, grader=grader)
    used = df["grader"].dropna()
    grader = grader or (str(used.iloc[0]) if len(used) else None)
    df = behaviour(df)
    variants = [str(v) for v in dict.fromkeys(df["variant"].dropna())]
    a = a or (variants[0] if variants else None)
    b = b or (variants[1] if len(variants) > 1 else None)
    has_unans = bool(df["input_tags"].map(lambda t: "unanswerable" in (list(t) if t is not None else [])).any())

    frames = []
    for m in MEASURES:
        r = rates(df, value=m, confidence=confidence, population=population)
        frames.append(r[["rate", "low", "high", "n", "k", "inputs"]].rename(columns={
            "rate": m, "low": f"{m}_low", "high": f"{m}_high", "n": f"{m}_n", "k": f"{m}_k", "inputs": f"{m}_inputs"}))
    per = pd.concat(frames, axis=1)
    size = df.groupby("variant", sort=False).agg(inputs=("input_id", "nunique"), calls=("id", "size"))
    per = per.join(size)
    per["repeats"] = [round(float(c) / max(int(i), 1), 1) for c, i in zip(per["calls"], per["inputs"])]  # as rate_text
    per = per.reindex([v for v in variants if v in per.index])

    caveats: list[str] = []
    verdict = escapes = by_tag = None
    value = None
    drivers: list[str] = []
    if a and b:
        value = "appropriate" if has_unans else "passed"
        # ungraded runs have no verdict: "appropriate" alone would judge only the unanswerable inputs
        if grader is not None and df[value].notna().any():
            res = paired_difference(df, a, b, value=value, split_by_tag=True, confidence=confidence,
                                    population=population, higher_is_better=True)
            verdict = res.loc["all"].to_dict()
            if verdict["pairs"] == 0:
                verdict = None
            by_tag = res.drop(index="all")
            drivers = _drivers(by_tag, verdict, a, b, confidence)
        if len(variants) > 2:
            caveats.append(f"{len(variants)} framings: this block compares {a} and {b}; every pair read as one "
                           "Holm-adjusted family is lab.stats.pairwise(runs) (Comparison.pairwise())")
        esc = paired_difference(df, a, b, value="escaped", confidence=confidence, population=population)
        escapes = esc.iloc[0].to_dict()
        n_inputs = int(df[df["variant"].isin([a, b])]["input_id"].nunique())
        if population == "inputs" and n_inputs < MIN_INPUTS:
            caveats.append(f"too few inputs to tell: {plural(n_inputs, 'input')} (a verdict needs {MIN_INPUTS})")
        calls = df[df["variant"].isin([a, b])].groupby(["variant", "input_id"]).size()
        if len(calls) and calls.max() > 2 * calls.min():
            caveats.append(f"repeats differ by input ({calls.min()} to {calls.max()} calls per input and framing): "
                           "each input counts once, but with fewer than 15 inputs, re-running the inputs that looked "
                           "interesting can still tilt a verdict; run every input the same number of times")
        small = [f"{MEASURES[m]} ({int(per[m + '_inputs'].min())})" for m in MEASURES
                 if (per[m + "_n"] > 0).any() and per.loc[per[m + "_n"] > 0, m + "_low"].isna().any()]
        if small and n_inputs >= MIN_INPUTS:
            caveats.append(f"rates over fewer than {MIN_INPUTS} inputs are shown as counts, without an interval: "
                           + ", ".join(small))
    answered = df[df["outcome"] == "answered"]
    ungraded = int(answered["passed"].isna().sum())
    if grader is None:
        has_expected = "expected" in df and df["expected"].map(lambda e: e is not None and e == e).any()
        caveats.append(
            f"ungraded: no grades for these runs yet, so nothing says which answers are correct ({len(answered)} "
            "answered runs; the inputs have expected answers: lab.grade(runs, lab.graders.default_grader()) grades them)"
            if has_expected else
            f"ungraded: no grader and no expected answers, so nothing says which answers are correct "
            f"({len(answered)} answered runs)")
    elif ungraded:
        caveats.append(f"{ungraded} of {len(answered)} answered runs have no {grader} grade and are left out")
    if grader == DEFAULT_GRADER:
        caveats.append(DEFAULT_GRADER_NOTE)
    if grades is not None and len(grades) and "grader" in grades:
        share = unparsed_share(grades[grades["run_id"].isin(set(df["id"]))])
        if share == share:
            caveats.append(f"{share:.0%} of judge grades are unparsed" + (
                ": the judge's replies cannot be read, do not trust its grades" if share > UNPARSED_WARN_SHARE else ""))
    errors = int((df["outcome"] == "error").sum())
    if errors:
        caveats.append(f"{errors} calls ended in an error and are left out of every rate")
    truncated = int((df["finish_reason"] == "length").sum()) if "finish_reason" in df else 0
    if truncated:
        caveats.append(f"{truncated} of {len(df)} answers stopped at max tokens and may be cut short; "
                       "a larger max_tokens gives them room")
    if population == "these":
        caveats.append("conclusions are about exactly these inputs, not inputs like them")
    exp = experiment_id or (str(runs["experiment_id"].iloc[0]) if "experiment_id" in runs and len(runs) else None)
    return Findings(experiment_id=exp, a=a, b=b, grader=grader, confidence=confidence, per_framing=per,
                    verdict=verdict, verdict_value=value, escapes=escapes, by_tag=by_tag, drivers=drivers,
                    caveats=caveats)


def from_log(log: Any, experiment_id: str, **kwargs: Any) -> Findings:
    """:func:`findings` for one experiment of a :class:`lab.store.RunLog`."""
    return findings(log.runs(experiment=experiment_id), log.grades(experiment_id), experiment_id=experiment_id,
                    **kwargs)
