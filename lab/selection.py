"""Selection-aware reading: a comparison on inputs that were used to choose between versions.

After k versions of a variant were tried on the same inputs, the one that looks best there is
partly the one that fit those inputs' noise (the winner's curse; adaptive overfitting to a
holdout, Dwork et al. 2015): its advantage over the baseline on those inputs is optimistic. The
findings say so in one clause and give a reading that allows for the search: the same paired
comparison (:func:`lab.stats.paired_difference`) with its interval widened for the best of k
(Bonferroni: level ``1 - alpha / k``), which holds whatever the versions' dependence. Only inputs
that took no part in the choice (the held-out part, :func:`lab.confirm`) give an unbiased estimate.

Pure functions over run rows and a count of the search (``lab.holdout.search`` reads it from the log).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .findings import Findings, RunTable, first_answers, verdict_reading
from .stats import TOO_FEW, interval_ends, paired_difference

if TYPE_CHECKING:  # the CLI reads the selection clause from the log's rows, without pandas
    import pandas as pd


@dataclass(frozen=True)
class Search:
    """How many versions of the compared variants were tried on these inputs."""

    versions: dict[str, int]  # variant -> distinct versions tried on these inputs
    inputs: int

    @property
    def candidate(self) -> str | None:
        """The variant that was searched over most (its versions were chosen between)."""
        return max(self.versions, key=lambda v: self.versions[v]) if self.versions else None

    @property
    def k(self) -> int:
        """Versions the comparison's winner was chosen from: all versions tried but the baseline's one."""
        return max(1, sum(self.versions.values()) - 1)

    @property
    def selected(self) -> bool:
        return self.k >= 2


def search_of(tried: pd.DataFrame | Sequence[tuple], variants: Sequence[str], inputs: int) -> Search:
    """The :class:`Search` behind a comparison of ``variants``, from ``RunLog.versions_tried`` rows
    (its DataFrame, or the tuples of ``RunLog.versions_tried_rows``)."""
    pairs = ((r[0], r[1]) for r in tried) if isinstance(tried, Sequence) else \
        zip(tried["variant"], tried["prompt_version"])
    versions: dict[Any, set[Any]] = {}
    for variant, version in pairs:
        seen = versions.setdefault(variant, set())
        if version is not None and version == version:
            seen.add(version)
    return Search({str(v): len(versions[v]) if v in versions else 1 for v in variants}, int(inputs))


def clause(search: Search) -> str:
    """The one clause the findings carry: what was chosen, from how many, on how many inputs."""
    c = search.candidate
    if c is None:
        return ""
    return (f"{c} was tried in {search.versions[c]} versions on these {search.inputs} inputs: read as the best of "
            f"{search.k}, its advantage here is optimistic")


def best_of_level(confidence: float, k: int) -> float:
    """The confidence a comparison is read at as the best of ``k`` versions (Bonferroni over the search)."""
    return 1 - (1 - confidence) / max(1, k)


def selection_aware(df: pd.DataFrame, a: str, b: str, k: int, *, value: str = "passed", confidence: float = 0.95,
                    higher_is_better: bool | None = True) -> dict[str, Any]:
    """The paired comparison a - b read as the best of ``k``: :func:`lab.stats.paired_difference`
    at level ``1 - (1 - confidence) / k``. One row (dict) with ``confidence`` added."""
    level = best_of_level(confidence, k)
    row = paired_difference(df, a, b, value=value, confidence=level, higher_is_better=higher_is_better).iloc[0]
    return {**row.to_dict(), "confidence": level}


def reading(row: dict[str, Any], k: int) -> str:
    """The selection-aware reading in words."""
    if row["verdict"] == TOO_FEW:  # no interval below the minimum number of inputs: never "+nan"
        return "too few inputs for a reading that allows for the search: only held-out inputs can confirm it (lab.confirm)"
    low, high = interval_ends(row["low"], row["high"], 2)
    ci = f"best of {k}: {row['confidence']:.2%} interval {low} to {high}"
    if row["verdict"] in ("A better", "B better"):
        return (f"allowing for the search ({ci}) the difference still holds; confirm it on held-out inputs "
                "(lab.confirm) before reporting it")
    return f"allowing for the search ({ci}) no difference is shown: only held-out inputs can confirm it (lab.confirm)"


def annotate(f: Findings, runs: pd.DataFrame, grades: pd.DataFrame | None, search: Search,
             confidence: float | None = None) -> Findings:
    """``f`` with the selection clause (and the selection-aware reading where there is a verdict to
    read) as its first caveat; ``f`` unchanged when no version was chosen on these inputs."""
    return annotate_table(f, lambda: first_answers(runs, grades, f.grader), search, confidence)


def annotate_table(f: Findings, answers: Callable[[], RunTable], search: Search,
                   confidence: float | None = None) -> Findings:
    """:func:`annotate` over the first answers as a :class:`lab.findings.RunTable` with their grades
    (``answers()`` gives it; read only when there is a verdict to re-read)."""
    if not search.selected:
        return f
    text = clause(search)
    if f.verdict is not None and f.verdict_value and f.a and f.b:
        level = best_of_level(confidence or f.confidence, search.k)
        row = verdict_reading(answers(), f.a, f.b, f.verdict_value, confidence=level)
        text += "; " + reading({**row, "confidence": level}, search.k)
    else:
        text += "; only held-out inputs can confirm a choice (lab.confirm)"
    return dataclasses.replace(f, caveats=[text, *f.caveats])
