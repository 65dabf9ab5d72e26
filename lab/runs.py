"""What a run returns: its records, and views over its rows in the log."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .names import html_text
from .store import RunLog, RunRecord

if TYPE_CHECKING:  # pandas is imported when a table is read, not to run calls
    import pandas as pd


@dataclass
class Runs:
    """What a run did. ``df`` holds the experiment's rows as the log has them."""

    experiment_id: str
    log: RunLog
    records: list[RunRecord]
    skipped: int = 0
    stopped: str | None = None
    spent_usd: float = 0.0
    wall_s: float = 0.0

    @property
    def df(self) -> pd.DataFrame:
        return self.log.runs(experiment=self.experiment_id)

    def summary(self) -> pd.DataFrame:
        """Per variant (and model): calls, outcomes, latency, tokens, cost; computed by the log."""
        return self.log.summary(self.experiment_id)

    def __len__(self) -> int:
        return len(self.records)

    def _repr_html_(self) -> str:
        note = f"<p>stopped: {html_text(self.stopped)}</p>" if self.stopped else ""
        return (f"<p><b>{html_text(self.experiment_id)}</b>: {len(self.records)} calls in {self.wall_s:.1f}s, "
                f"log {html_text(self.log.path)}</p>{note}" + self.summary().to_html())

    def __repr__(self) -> str:
        # Cheap on purpose: asyncio.run() formats the finished task (and so this) when it restores
        # the SIGINT handler; a query of the log here cost 0.1 s per 400 calls. str() shows the table.
        counts: dict[str, int] = {}
        for rec in self.records:
            counts[rec.outcome] = counts.get(rec.outcome, 0) + 1
        detail = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
        return f"Runs({self.experiment_id!r}, {len(self.records)} calls" + (f": {detail})" if detail else ")")

    def __str__(self) -> str:
        return f"{self!r}\n{self.summary().to_string()}"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:  # IPython's text display: the summary table
        p.text(str(self))
