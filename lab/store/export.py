"""Exporting an experiment as Parquet files (one table, or a Hive-partitioned dataset)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import StoreError
from ..names import folder_value
from .backend import LogURL
from .record import _JSON_COLUMNS, _dumps

if TYPE_CHECKING:
    import pandas as pd


class Export:
    """The Parquet export of :class:`lab.store.RunLog` (it reads through the log's ``runs`` and
    ``grades``, :class:`lab.store.queries.Queries`)."""

    path: Path | LogURL
    # RunLog's reading part (lab.store.queries.Queries)
    runs: Callable[..., pd.DataFrame]
    grades: Callable[..., pd.DataFrame]

    def export(self, experiment: str, path: str | Path, *,
               partition_by: str | list[str] | None = None) -> Path:
        """Write one experiment's runs and grades as Parquet files under ``path`` (a folder).

        By default: ``runs.parquet`` and ``grades.parquet``. With ``partition_by`` (column names
        of the runs table, e.g. ``["variant", "model"]``, or ``"date"`` for the UTC day a call
        finished) the runs become a Hive-partitioned dataset in ``runs/`` (``variant=.../model=.../
        *.parquet``) that DuckDB, Polars or Spark read as one table; the partition columns come
        back from the folder names, so read it with ``hive_partitioning=true``. A value too long for a
        folder name is shortened to its start plus ``~`` and a hash (:func:`lab.names.folder_value`).
        """
        out = Path(path)
        runs = self.runs(experiment)
        if runs.empty:
            raise StoreError(f"{self.path}: no runs for experiment {experiment!r}")
        parts = [partition_by] if isinstance(partition_by, str) else list(partition_by or [])
        if parts:
            if "date" in parts and "date" not in runs:
                runs["date"] = runs["finished_at"].str.slice(0, 10)
            unknown = [c for c in parts if c not in runs]
            if unknown:
                raise StoreError(f"partition_by: {unknown} are not columns of the runs table; "
                                 f"try variant, model, prompt_version, input_id, date")
        out.mkdir(parents=True, exist_ok=True)
        for col in _JSON_COLUMNS["runs"]:
            runs[col] = [_dumps(v) for v in runs[col]]
        if parts:
            import pyarrow as pa
            import pyarrow.parquet as pq

            if (out / "runs").exists():
                raise StoreError(f"{out / 'runs'} already exists; export a partitioned table into a new folder")
            for col in parts:  # folder names: text, missing values spelled out, long ones shortened (lab.names)
                runs[col] = runs[col].astype("string").fillna("(none)").map(folder_value)
            pq.write_to_dataset(pa.Table.from_pandas(runs, preserve_index=False), out / "runs",
                                partition_cols=parts, basename_template="part-{i}.parquet")
        else:
            runs.to_parquet(out / "runs.parquet", index=False)
        grades = self.grades(experiment)
        grades["detail"] = [_dumps(v) for v in grades["detail"]]
        grades.to_parquet(out / "grades.parquet", index=False)
        return out
