"""The results grid: inputs down, variants (or versions, or rounds) across, one cell per output
coloured by its graded outcome, the full output with its grade and why one click away, filters
for failures, disagreements and tags, and totals per column with intervals over inputs.

    lab.grid.results_grid(runs, grades)              # in a notebook, a report or the compare view

It is plain HTML and CSS (``<details>`` to open a cell, radio buttons and ``:has()`` to filter),
so it works the same in JupyterLab, inside a widget and in an offline HTML report.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from .graders import DEFAULT_GRADER
from .names import html_text
from .stats import plural, rate_text, rates
from .tables import _input_text

# outcome kind -> (colour, light background, words)
OUTCOME_KINDS: dict[str, tuple[str, str, str]] = {
    "correct": ("#2ca02c", "#e3f4e3", "correct"),
    "wrong": ("#d62728", "#fbe3e3", "wrong"),
    "escaped-right": ("#1a8f9e", "#e0f3f5", "escaped where it should"),
    "over-abstained": ("#e67700", "#fdf0e0", "over-abstained"),
    "answered-right": ("#5b8f3a", "#eef5e8", "answered where it should"),
    "error": ("#6b6b6b", "#ececec", "error"),
    "ungraded": ("#8c8c8c", "#f7f7f7", "ungraded"),
}
# the rule a grader applies, said where its verdict could surprise ("The review is negative." fails)
RULES = {DEFAULT_GRADER: "the default grader: the expected answer must open the output, after normalizing"}
FAILURES = frozenset({"wrong", "over-abstained", "error"})
# what a kind counts as in the totals: behaving appropriately (1), not (0), or neither (left out)
APPROPRIATE = {"correct": 1.0, "escaped-right": 1.0, "wrong": 0.0, "over-abstained": 0.0}


@dataclass(frozen=True)
class GradeBadge:
    """What a card and a grid cell say about one output: the outcome in words, why, and which
    grader said so. ``kind`` is a key of :data:`OUTCOME_KINDS` (its colour)."""

    text: str
    kind: str
    why: str
    grader: str | None = None
    truncated: bool = False


def _get(run: Any, key: str, default: Any = None) -> Any:
    if isinstance(run, Mapping):
        value = run.get(key, default)
    elif isinstance(run, pd.Series):
        value = run.get(key, default)
    else:
        value = getattr(run, key, default)
    return default if value is None else value


def _is_missing(v: object) -> bool:
    return v is None or (isinstance(v, float) and v != v)


def _short(text: object, n: int = 60) -> str:
    t = " ".join(str(text or "").split())
    return t if len(t) <= n else t[: n - 1] + "…"


def badge(run: Any, grades: pd.DataFrame | None) -> GradeBadge:
    """The badge for one output (a run row, a dict or a :class:`lab.store.RunRecord`).

    Correctness comes from a correctness grader (match, regex, json_schema, a judge, ...); an
    escape-hatch grader's pass only says the model answered where it should; an escape is right
    on an input tagged ``unanswerable`` and over-abstention on any other. Human ratings are not
    grades of correctness and are left out."""
    truncated = _get(run, "finish_reason") == "length"
    outcome = _get(run, "outcome")
    if outcome == "error":
        return GradeBadge("error", "error", f"the call failed: {_short(_get(run, 'error'), 200)}")
    tags = _get(run, "input_tags", []) or []
    unanswerable = "unanswerable" in list(tags)
    if outcome == "escaped":
        if unanswerable:
            return GradeBadge("escaped where it should", "escaped-right",
                              "took the way out on an input tagged unanswerable: the right call", truncated=truncated)
        return GradeBadge("over-abstained", "over-abstained",
                          "took the way out on an input that has an answer (not tagged unanswerable)", truncated=truncated)
    run_id = _get(run, "id")
    g = grades[grades["run_id"] == run_id] if grades is not None and len(grades) else None
    if g is not None and len(g):
        g = g[~g["grader"].astype(str).str.startswith("human:") & g["passed"].notna()].sort_values("seq")
    if g is None or g.empty:
        why = ("no grader in the prompt file and no expected answer for this input"
               if _is_missing(_get(run, "expected")) else "not graded yet")
        return GradeBadge("ungraded", "ungraded", why, truncated=truncated)
    correctness = g[~g["grader"].astype(str).str.startswith("escape_hatch")]
    row = (correctness if len(correctness) else g).iloc[-1]
    passed, grader = bool(row["passed"]), str(row["grader"])
    got = f"got \"{_short(_get(run, 'output'))}\""
    if len(correctness):
        exp = _get(run, "expected")
        expected = "" if _is_missing(exp) else f"expected \"{_short(exp, 40)}\", "
        rule = f" ({RULES[grader]})" if grader in RULES else ""
        return GradeBadge("correct" if passed else "wrong", "correct" if passed else "wrong",
                          f"{grader}: {expected}{got}{rule}", grader, truncated)
    if passed:
        return GradeBadge("answered where it should", "answered-right",
                          f"{grader}: answered an answerable input (this grader does not check correctness)", grader,
                          truncated)
    return GradeBadge("answered where it should have escaped", "wrong",
                      f"{grader}: the input is tagged unanswerable, the model answered anyway", grader, truncated)


# ---- the grid ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Grid:
    """A results grid as HTML (a notebook cell that ends with one shows it)."""

    html: str
    rows: int
    columns: list[str]

    def _repr_html_(self) -> str:
        return self.html


def _column_labels(df: pd.DataFrame, columns: str) -> pd.Series:
    if columns == "version":
        return df["variant"].astype(str) + " · version " + df["prompt_version"].astype(str).str[:8]
    if columns == "round":
        return df["round"].map(lambda r: "first answer" if r == 0 else f"revision {r}")
    return df[columns].astype(str)


def results_grid(runs: pd.DataFrame, grades: pd.DataFrame | None = None, *, columns: str = "variant",
                 confidence: float = 0.95, blind: bool = False) -> Grid:
    """Inputs down, ``columns`` across (``variant``, ``version`` for each variant's prompt
    versions, ``round`` for self-critique rounds, ``model``), one cell per output coloured by its
    outcome (correct, wrong, escaped where it should, over-abstained, error, ungraded); click a
    cell for the whole output, its grade and why, the grader, tokens and finish reason. Filters:
    failures, disagreements (columns that differ on an input), each tag. Totals per column: the
    share of outputs that behaved appropriately with an interval over inputs
    (:func:`lab.stats.rates`; as counts below the minimum number of inputs). ``blind`` shows
    columns as A, B, ... and hides tokens."""
    df = runs
    if "role" in df:
        df = df[df["role"].fillna("answer").isin(["answer", "revision"])]
    gid = "g" + secrets.token_hex(4)
    if df.empty:
        return Grid(f"<div class='promptlab-grid' id='{gid}'><i>no outputs to show yet</i></div>", 0, [])
    df = df.copy()
    df["_col"] = _column_labels(df, columns)
    cols = list(dict.fromkeys(df["_col"]))
    names = {c: (f"variant {chr(65 + i)}" if blind else c) for i, c in enumerate(cols)}
    df["_badge"] = [badge(r, grades) for r in df.to_dict("records")]
    df["_kind"] = df["_badge"].map(lambda b: b.kind)
    inputs = list(dict.fromkeys(df["input_id"]))
    tags = sorted({t for ts in df["input_tags"] for t in (list(ts) if isinstance(ts, (list, tuple)) else [])})
    rows_html, n_fail, n_differ = [], 0, 0
    by_input = {k: g for k, g in df.groupby("input_id", sort=False)}
    for input_id in inputs:
        g = by_input[input_id]
        first = g.iloc[0]
        its_tags = list(first["input_tags"]) if isinstance(first["input_tags"], (list, tuple)) else []
        kinds_per_col = {c: sorted(set(g[g["_col"] == c]["_kind"])) for c in cols}
        fail = any(k in FAILURES for ks in kinds_per_col.values() for k in ks)
        differ = len({tuple(v) for v in kinds_per_col.values() if v}) > 1
        n_fail += fail
        n_differ += differ
        classes = " ".join(["row"] + (["failures"] if fail else []) + (["differ"] if differ else [])
                           + [f"tag-{tags.index(t)}" for t in its_tags if t in tags])
        text = _input_text(first.get("input_vars"))
        head = (f"<td class='input'><b>{html_text(input_id)}</b><div class='text'>{html_text(_short(text, 160))}</div>"
                + (f"<div class='tags'>{html_text(', '.join(its_tags))}</div>" if its_tags else "") + "</td>")
        cells = "".join(_cell(g[g["_col"] == c], blind) for c in cols)
        rows_html.append(f"<tr class='{classes}' data-input='{html_text(input_id)}'>{head}{cells}</tr>")
    totals = _totals(df, cols, confidence)
    filters = [("all", f"all inputs ({len(inputs)})", True), ("failures", f"failures ({n_fail})", False),
               ("differ", f"disagreements ({n_differ})", False)]
    filters += [(f"tag-{i}", f"tag {t}", False) for i, t in enumerate(tags)]
    radios = " ".join(
        f"<label><input type='radio' name='{gid}-filter' value='{v}' id='{gid}-{v}'{' checked' if on else ''}> "
        f"{html_text(text)}</label>" for v, text, on in filters)
    rules = "\n".join(f"#{gid}:has(#{gid}-{v}:checked) tbody tr:not(.{v}) {{display:none}}"
                      for v, _, _ in filters[1:])
    head = "".join(f"<th>{html_text(names[c])}</th>" for c in cols)
    legend = " ".join(f"<span class='chip' style='background:{c}'>{html_text(w)}</span>" for k, (c, _, w) in OUTCOME_KINDS.items()
                      if k in set(df["_kind"]))
    page = f"""<div class='promptlab-grid' id='{gid}'><style>
#{gid} {{font-size:13px;line-height:1.4}}
#{gid} table {{border-collapse:collapse;margin-top:6px}}
#{gid} th, #{gid} td {{padding:5px 9px;border:1px solid #e2e2e2;vertical-align:top;text-align:left;
  overflow-wrap:normal;word-break:normal;hyphens:manual}}
#{gid} td.input {{max-width:300px;min-width:160px}} #{gid} td.cell {{min-width:150px;max-width:340px}}
#{gid} .text {{color:#444}} #{gid} .tags {{color:#888;font-size:12px}}
#{gid} .chip {{display:inline-block;padding:0 6px;border-radius:3px;color:#fff;font-weight:600;font-size:12px;
  white-space:nowrap}}
#{gid} summary {{cursor:pointer}} #{gid} pre {{white-space:pre-wrap;margin:4px 0;font-size:12px}}
#{gid} .why {{color:#555;font-size:12px}} #{gid} tfoot td, #{gid} tfoot th {{background:#fafafa}}
#{gid} .filters label {{margin-right:12px;white-space:nowrap}}
{rules}
</style><div class='filters'>show: {radios}</div><div class='legend'>{legend}</div>
<table><thead><tr><th>input</th>{head}</tr></thead><tbody>{''.join(rows_html)}</tbody>
<tfoot>{totals}</tfoot></table></div>"""
    return Grid(page, len(inputs), [names[c] for c in cols])


def _cell(g: pd.DataFrame, blind: bool) -> str:
    if g.empty:
        return "<td class='cell empty'>–</td>"
    kinds = Counter(g["_kind"])
    main = kinds.most_common(1)[0][0]
    parts = []
    for _, r in g.sort_values("repeat").iterrows():
        b: GradeBadge = r["_badge"]
        color = OUTCOME_KINDS.get(b.kind, OUTCOME_KINDS["ungraded"])[0]
        body = r["error"] if r["outcome"] == "error" else r["output"]
        facts = [f"grader {b.grader}" if b.grader else "no grader", f"repeat {int(r['repeat'])}"]
        if not blind:
            tokens = r.get("output_tokens")
            tokens = int(tokens) if isinstance(tokens, (int, float)) and tokens == tokens else 0
            facts.append(plural(tokens, "token"))
        finish = r.get("finish_reason")
        if isinstance(finish, str) and finish:
            facts.append(f"finish reason {finish}")
        stop = " <span class='chip' style='background:#d62728'>stopped at max tokens</span>" if b.truncated else ""
        parts.append(f"<details data-kind='{b.kind}'><summary><span class='chip' style='background:{color}'>"
                     f"{html_text(b.text)}</span>{stop} {html_text(_short(body, 50))}</summary><pre>{html_text(body)}</pre>"
                     f"<div class='why'>{html_text(b.why)}</div><div class='why'>{html_text(' · '.join(facts))}</div></details>")
    light = OUTCOME_KINDS.get(main, OUTCOME_KINDS["ungraded"])[1]
    return f"<td class='cell' data-kind='{main}' style='background:{light}'>{''.join(parts)}</td>"


def _totals(df: pd.DataFrame, cols: list[str], confidence: float) -> str:
    scored = df.assign(appropriate=df["_kind"].map(APPROPRIATE))
    table = rates(scored[scored["appropriate"].notna()], value="appropriate", by="_col", confidence=confidence) \
        if scored["appropriate"].notna().any() else None
    line, counts = [], []
    for c in cols:
        sub = df[df["_col"] == c]
        counts.append(" · ".join(f"{OUTCOME_KINDS[k][2]} {v}" for k, v in Counter(sub["_kind"]).most_common()))
        if table is None or c not in table.index:
            line.append("–")
            continue
        r = table.loc[c]
        line.append(rate_text(int(r["k"]), int(r["n"]), int(r["inputs"]), r["rate"], r["low"], r["high"]))
    return (f"<tr><th title='right answer where there is one, the way out where there is none'>appropriate "
            f"({confidence:.0%} interval over inputs)</th>" + "".join(f"<td>{html_text(x)}</td>" for x in line) + "</tr>"
            + "<tr><th>outcomes</th>" + "".join(f"<td>{html_text(x)}</td>" for x in counts) + "</tr>")


def records_frame(records: list[Any]) -> pd.DataFrame:
    """Run records (:class:`lab.store.RunRecord`) as the DataFrame the grid reads."""
    return pd.DataFrame([dataclasses.asdict(r) for r in records])
