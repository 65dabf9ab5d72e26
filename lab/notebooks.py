"""Notebooks run headless: a batch notebook executed with papermill, one run or a grid of them.

    result = lab.notebooks.run_notebook("notebooks/persona_vs_honest.ipynb", {"repeats": 5, "model": "local:smollm2"})
    result.notebook, result.html, result.summary()

A run executes the notebook with papermill (kernel ``python3``, the kernel of the Python that
runs it) into ``results/<experiment-id>/``, with its parameters injected after the notebook's
``parameters`` cell. The experiment id is injected as the ``experiment_id`` parameter, so every
model call the notebook makes is logged under it; the parameters and the id are recorded in the
output notebook's metadata (``metadata.promptlab``) and in the log (events ``notebook_started``
and ``notebook_finished``). The kernel runs with ``PROMPTLAB_PROGRESS=text`` (a live bar would be
frozen at 0% in the saved notebook) and with the project root as its working folder. Each run
also writes its offline HTML copy (:func:`lab.report.export_html`).
"""


from __future__ import annotations

import contextlib
import itertools
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import LabError, NotebookError, ParameterError
from .names import check_id, path_under
from .names import experiment_id as new_experiment_id
from .report import (
    _add_failure_banner,
    _existing,
    _failed_cell,
    _redact_notebook,
    _why_failed,
    export_html,
    static_images,
    write_index,
)
from .secrets import looks_like_secret
from .store import RunLog
from .store.backend import LogURL
from .version import __version__

RESULTS = Path("results")


def project_root(start: str | Path | None = None, *, chdir: bool = False) -> Path:
    """The nearest folder at or above ``start`` (default: the working folder) that holds ``prompts/``.

    Notebooks open with their own folder as the working folder; paths in the lab's notebooks
    (``prompts/...``, ``results/...``) are relative to the project root. ``chdir=True`` moves there.
    """
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "prompts").is_dir():
            if chdir and Path.cwd().resolve() != folder:
                os.chdir(folder)
            return folder
    raise NotebookError(f"no folder at or above {here} holds a prompts/ folder; start from the project")


def check_parameters(parameters: Mapping[str, Any]) -> None:
    """Refuse any parameter that looks like a secret: keys come from the environment only."""
    for name, value in parameters.items():
        if looks_like_secret(str(name), value):
            raise ParameterError(
                f"parameter {name!r} looks like a secret and would be written into the notebook, the HTML "
                "and the log; pass keys through the environment (e.g. ANTHROPIC_API_KEY), never as parameters"
            )


def notebook_parameters(notebook: str | Path) -> dict[str, Any]:
    """The names and default values (as source text) of a notebook's ``parameters`` cell."""
    import papermill

    path = _existing(notebook)
    try:
        found = papermill.inspect_notebook(str(path))
    except Exception as exc:
        raise NotebookError(f"{path}: cannot read its parameters: {exc}") from None
    return {name: info.get("default") for name, info in found.items()}


def _set_environ(values: Mapping[str, str | None]) -> None:
    for k, v in values.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@contextlib.contextmanager
def _environ(**values: str | None) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    try:
        _set_environ(values)
        yield
    finally:
        _set_environ(old)


@dataclass
class NotebookRun:
    """One executed notebook: where its copies are, what it was given, what it logged."""

    source: Path
    experiment_id: str
    parameters: dict[str, Any]
    notebook: Path
    html: Path | None
    log_path: Path | LogURL
    wall_s: float
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def runs(self) -> pd.DataFrame:
        """The model calls this notebook logged."""
        return RunLog(self.log_path).runs(experiment=self.experiment_id)

    def summary(self) -> pd.DataFrame:
        """Per variant: n, answered, escaped, errors, mean latency, tokens, cost (:meth:`lab.store.RunLog.summary`)."""
        return RunLog(self.log_path).summary(self.experiment_id)


def run_notebook(notebook: str | Path, parameters: Mapping[str, Any] | None = None, *,
                 experiment_id: str | None = None, output_dir: str | Path | None = None,
                 log: str | Path | None = None, html: bool = True, kernel: str = "python3",
                 timeout_s: float | None = None, cwd: str | Path | None = None,
                 echo: bool = False) -> NotebookRun:
    """Execute ``notebook`` with papermill and (with ``html=True``) write its offline HTML copy.

    ``parameters`` must name parameters of the notebook's ``parameters`` cell; a name the
    notebook lacks, or a value that looks like a secret, is refused before anything runs.
    ``experiment_id`` defaults to ``<notebook name>-<UTC time>-<4 hex>``. Output goes to
    ``output_dir`` (default ``results/<experiment-id>/``). ``log`` is the run log the kernel
    writes (default ``$PROMPTLAB_LOG`` or ``results/promptlab.db``). ``cwd`` is the kernel's
    working folder (default: the project root). ``echo`` streams cell output to this terminal.

    A cell that fails raises :class:`NotebookError` naming the cell's error; the partly executed
    notebook is still saved (and exported) for reading.
    """
    import nbformat
    import papermill
    from traitlets.config import Config

    source = _existing(notebook)
    params = dict(parameters or {})
    check_parameters(params)
    known = notebook_parameters(source)
    if not known:
        raise NotebookError(f"{source}: has no cell tagged 'parameters'; papermill needs one to inject values")
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise ParameterError(f"{source}: no parameter(s) {unknown}; the notebook takes {sorted(known)}")
    if "experiment_id" in params:  # -p experiment_id X is the id, as --id X is; two different ones are refused
        given = params.pop("experiment_id")
        if experiment_id is not None and given != experiment_id:
            raise ParameterError(f"two experiment ids: experiment_id={experiment_id!r} and the parameter {given!r}")
        experiment_id = given
    exp_id = experiment_id or new_experiment_id(source.stem)
    check_id(exp_id, "experiment id" if experiment_id else f"notebook name {source.stem!r} makes an id that",
             ParameterError)
    if "experiment_id" in known:
        params["experiment_id"] = exp_id
    root = Path(cwd) if cwd is not None else project_root(source.parent)
    out_dir = (Path(output_dir) if output_dir is not None
               else path_under(root / RESULTS, exp_id, what="experiment id", error=ParameterError))
    out_dir.mkdir(parents=True, exist_ok=True)
    out_nb = out_dir / source.name
    run_log = RunLog(log)
    log_path = run_log.path.resolve()
    run_log.add_event(exp_id, "notebook_started", notebook=str(source), output=str(out_nb), parameters=params,
                      lab_version=__version__)
    error: str | None = None
    t0 = time.perf_counter()
    with _environ(PROMPTLAB_PROGRESS="quiet", PROMPTLAB_LOG=str(log_path), PYDEVD_DISABLE_FILE_VALIDATION="1"):
        try:
            papermill.execute_notebook(
                str(source), str(out_nb), parameters=params, kernel_name=kernel, progress_bar=False,
                cwd=str(root), log_output=echo, stdout_file=sys.stdout if echo else None,
                stderr_file=sys.stderr if echo else None, execution_timeout=timeout_s,
                # talk to the kernel over local sockets, not TCP ports that anyone on the host could reach
                config=Config({"KernelManager": {"transport": "ipc"}}),
            )
        except Exception as exc:  # a cell raised, the kernel died, a timeout, ...
            failure: Exception | None = exc
            error = _why_failed(exc)
        else:
            failure = None
    wall = time.perf_counter() - t0
    html_path = None
    if out_nb.exists():
        nb = nbformat.read(out_nb, as_version=4)
        if failure is not None:
            where = _failed_cell(nb)
            error = f"{where}: {error}" if where else error
            _add_failure_banner(nb, where, _why_failed(failure))
        nb.metadata["promptlab"] = {"experiment_id": exp_id, "parameters": params, "source": str(source),
                                    "log": _relative(log_path, root), "lab_version": __version__,
                                    "executed_at": datetime.now(UTC).isoformat(timespec="seconds"),
                                    "error": error, **_sizes(run_log, exp_id)}
        _redact_notebook(nb)
        static_images(nb)  # a PNG beside each plotly figure, so GitHub and nbviewer show it too
        nbformat.write(nb, out_nb)
        if html:
            html_path = export_html(out_nb)
    run_log.add_event(exp_id, "notebook_finished", notebook=str(source), output=str(out_nb),
                      html=str(html_path) if html_path else None, error=error, wall_s=round(wall, 3))
    result = NotebookRun(source=source, experiment_id=exp_id, parameters=params, notebook=out_nb, html=html_path,
                         log_path=log_path, wall_s=wall, error=error)
    if html_path is not None and output_dir is None:  # a run under results/: the index lists it
        with contextlib.suppress(OSError, ValueError):
            write_index(root / RESULTS)
    if error is not None:
        html_txt = f", its HTML (with the failure at the top) {html_path}" if html_path else ""
        raise NotebookError(f"{source} failed: {error}; the partly executed notebook is {out_nb}{html_txt}")
    return result


def _sizes(run_log: RunLog, exp_id: str) -> dict[str, int]:
    """How many calls and inputs the run logged (for the results index)."""
    try:
        df = run_log.runs(experiment=exp_id)
    except LabError:
        return {}
    return {"calls": int(len(df)), "inputs": int(df["input_id"].nunique()) if len(df) else 0}


def _relative(path: Path | LogURL, root: Path) -> str:
    if not isinstance(path, Path):
        return str(path)  # a server log's URL (its password already left out)
    try:
        return str(path.relative_to(root.resolve()))
    except ValueError:
        return str(path)


def parameter_grid(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of the listed values, in order: ``{"repeats": [2, 5], "model": [a, b]}``
    gives four parameter sets."""
    names = list(grid)
    for name in names:
        if isinstance(grid[name], (str, bytes)) or not isinstance(grid[name], Sequence) or not grid[name]:
            raise ParameterError(f"grid {name!r}: give a non-empty list of values, got {grid[name]!r}")
    return [dict(zip(names, combo)) for combo in itertools.product(*(grid[n] for n in names))]


@dataclass
class GridRun:
    """Runs of one notebook over several parameter sets, one after another."""

    runs: list[NotebookRun] = field(default_factory=list)
    failures: list[tuple[dict[str, Any], str]] = field(default_factory=list)

    def summary(self) -> pd.DataFrame:
        """One row per parameter set: what it was given, what its calls did, where its copies are."""
        rows = []
        for r in self.runs:
            df = r.runs()
            rows.append({**r.parameters, "experiment_id": r.experiment_id, "status": "ok" if r.ok else r.error,
                         "calls": len(df), "answered": int((df["outcome"] == "answered").sum()) if len(df) else 0,
                         "escaped": int((df["outcome"] == "escaped").sum()) if len(df) else 0,
                         "errors": int((df["outcome"] == "error").sum()) if len(df) else 0,
                         "mean_latency_ms": round(float(df["latency_ms"].mean()), 1) if len(df) else None,
                         "wall_s": round(r.wall_s, 1), "html": str(r.html) if r.html else None})
        for params, err in self.failures:
            rows.append({**params, "status": err})
        return pd.DataFrame(rows)


def run_grid(notebook: str | Path, grid: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]],
             base: Mapping[str, Any] | None = None, **kwargs: Any) -> GridRun:
    """Run ``notebook`` once per parameter set, one after another, and collect one summary.

    ``grid`` is either a mapping of name -> values (every combination is run) or a list of
    parameter sets. ``base`` holds parameters shared by all. Every set is checked (secrets,
    unknown names) before the first one runs; a set that fails is recorded and the rest still run.
    Other keyword arguments go to :func:`run_notebook`.
    """
    sets = parameter_grid(grid) if isinstance(grid, Mapping) else [dict(s) for s in grid]
    if not sets:
        raise ParameterError("run_grid: no parameter sets")
    sets = [{**(base or {}), **s} for s in sets]
    source = _existing(notebook)
    known = notebook_parameters(source)
    for s in sets:
        check_parameters(s)
        unknown = sorted(set(s) - set(known))
        if unknown:
            raise ParameterError(f"{source}: no parameter(s) {unknown}; the notebook takes {sorted(known)}")
    result = GridRun()
    for s in sets:
        try:
            result.runs.append(run_notebook(source, s, **kwargs))
        except NotebookError as exc:
            result.failures.append((s, str(exc)))
    return result
