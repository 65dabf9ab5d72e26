"""``python -m lab``: run experiments, list and show them, export them.

    python -m lab run prompts/sentiment.yaml --inputs prompts/sentiment_inputs.yaml --repeats 3
    python -m lab runs
    python -m lab show <experiment-id>
    python -m lab export <experiment-id> results/exports/
    python -m lab log merge laptop.db ci-runner.db --into postgresql://ann@db.example/lab
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .errors import LabError
from .names import path_under, terminal_text
from .secrets import redact

if TYPE_CHECKING:  # pandas is imported by the commands that print tables (`--help` stays fast)
    import pandas as pd

Command = Callable[[argparse.Namespace], int]
_COMMANDS: dict[str, Command] = {}


def command(name: str) -> Callable[[Command], Command]:
    def deco(fn: Command) -> Command:
        _COMMANDS[name] = fn
        return fn

    return deco


def _param(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--param wants NAME=VALUE, got {text!r}")
    k, v = text.split("=", 1)
    try:
        return k, json.loads(v)
    except json.JSONDecodeError:
        return k, v


# Control characters (ANSI escapes from a model's output or a name from a file) are made visible,
# never sent to the terminal: every line this module prints goes through _as_text.
_as_text = terminal_text


def _say(*values: Any, **kwargs: Any) -> None:
    """print(), with control characters in text made visible."""
    print(*(_as_text(v) if isinstance(v, str) else v for v in values), **kwargs)


def _print_df(df: pd.DataFrame) -> None:
    import pandas as pd

    df = df.map(_as_text)
    df.index = df.index.map(_as_text)
    with pd.option_context("display.max_columns", 20, "display.width", 160, "display.max_colwidth", 60):
        print(df.to_string())


def _print_rows(index: list[str], columns: list[str], rows: list[tuple]) -> None:
    """A small table as pandas would print it (index columns left, values right-aligned), without
    importing pandas: `show` is done before pandas would have finished importing."""
    def cell(v: Any) -> str:
        if v is None or (isinstance(v, float) and v != v):
            return "NaN"
        if isinstance(v, float):
            return f"{v:g}" if abs(v) >= 1e-4 or v == 0 else f"{v:.6g}"
        return str(_as_text(v))

    body = [[cell(v) for v in row] for row in rows]
    k = len(index)
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(index + columns)]
    head = [" " * widths[i] for i in range(k)] + [h.rjust(widths[k + i]) for i, h in enumerate(columns)]
    print("  ".join(head).rstrip())
    print("  ".join(h.ljust(widths[i]) for i, h in enumerate(index)).rstrip())
    for r in body:
        print("  ".join([r[i].ljust(widths[i]) for i in range(k)] + [r[i].rjust(widths[i]) for i in range(k, len(r))]))


@command("run")
def cmd_run(args: argparse.Namespace) -> int:
    from .experiments import experiment

    exp = experiment(
        args.prompt, inputs=args.inputs, model=args.model, repeats=args.repeats, variants=args.variant,
        params=dict(args.param or []), seed=args.seed, concurrency=args.concurrency, budget_usd=args.budget,
        replay=args.replay, resume=args.resume, log=args.log, id=args.id, tags=args.tag,
        progress=args.progress, max_calls=args.max_calls, split=args.split,
        new_version=args.new_version,
    )
    _say(f"experiment {exp.id}: {exp.describe()}", flush=True)
    runs = exp.run()
    made, skipped, wall_s = len(runs), runs.skipped, runs.wall_s
    log, exp_id, prompt = exp.log, exp.id, exp.prompt
    # everything below reads the log, the columns it needs only: the run's records and the
    # experiment's rendered plan are let go before the findings load pandas
    del runs, exp
    gc.collect()
    print()
    _print_rows(*log.summary_rows(exp_id))  # computed in SQL, as `show` prints it
    sys.stdout.flush()
    _grade_and_print_findings(log, exp_id, prompt)
    extra = f", {skipped} already done (resumed)" if skipped else ""
    _say(f"\n{made} calls in {wall_s:.1f}s{extra}. Log: {log.path}  (experiment {exp_id})")
    _say(f"Read it back: python -m lab show {exp_id}" + (f" --log {args.log}" if args.log else ""))
    return 0


def _grade_and_print_findings(log: Any, exp_id: str, prompt: Any) -> None:
    """Grade with the prompt file's grader (or the default one when inputs have expected answers),
    then print the findings block. Both read the log's rows as plain tuples, the columns they use
    only (pandas is never loaded): a 20k-call run's messages and parameters are never read."""
    from .findings import from_log
    from .graders import grader_from_spec
    from .grading import grade_stored
    from .holdout import with_selection

    spec = getattr(prompt, "grader", None)
    named = [grader_from_spec(spec, f"{prompt.path}: grader")] if spec else []
    if any(g.fn is None for g in named):  # a judge reads the whole row and calls a model
        from .grading import grade
        from .techniques._common import resolve_graders

        grade(log.runs(experiment=exp_id), resolve_graders(None, prompt), log=log)
    else:
        grade_stored(log, exp_id, named)
    print()
    print(with_selection(from_log(log, exp_id), log, exp_id))


def _existing_log(args: argparse.Namespace) -> Any:
    """The run log a reading command names: a ``--log`` that does not exist is a mistake, not a new log."""
    from pathlib import Path

    from .errors import StoreError
    from .store import RunLog
    from .store.backend import is_url

    if args.log is not None and not is_url(args.log) and not Path(args.log).exists():
        raise StoreError(f"{args.log}: no run log there; check the path (reading commands never create a log; "
                         "`python -m lab runs` without --log lists the default one's experiments)")
    return RunLog(args.log)


@command("runs")
def cmd_runs(args: argparse.Namespace) -> int:
    log = _existing_log(args)
    df = log.experiments()
    if df.empty:
        print(f"no experiments in {log.path}")
        return 0
    _print_df(df[["id", "created_at", "prompt_path", "repeats", "calls", "answered", "escaped", "errors", "cost_usd"]])
    return 0


@command("show")
def cmd_show(args: argparse.Namespace) -> int:
    log = _existing_log(args)
    by, cols, rows = log.summary_rows(args.experiment)  # computed by SQLite; printed before anything slower
    if not rows:
        _say(f"no runs for experiment {args.experiment!r} in {log.path}; `python -m lab runs` lists them",
             file=sys.stderr)
        return 2
    _print_rows(by, cols, rows)
    if args.summary_only:
        return 0
    sys.stdout.flush()
    from .findings import from_log

    print()
    print(from_log(log, args.experiment))  # the log's rows as tuples: no pandas
    if args.outputs:
        print()
        _print_outputs(log.runs(experiment=args.experiment,
                                columns=["variant", "input_id", "repeat", "outcome", "output", "error",
                                         "finish_reason"]))
    return 0


def _print_outputs(df: pd.DataFrame) -> None:
    """Each call's output (or error) in full under a one-line heading: a table would pad every line
    to the longest output."""
    for r in df.itertuples(index=False):
        stopped = " | stopped at max tokens" if r.finish_reason == "length" else ""
        _say(f"[{r.variant} | input {r.input_id} | repeat {r.repeat} | {r.outcome}{stopped}]")
        text = r.error if r.outcome == "error" and isinstance(r.error, str) else r.output
        for line in (text if isinstance(text, str) else "").splitlines() or [""]:
            _say(f"  {line}")


@command("export")
def cmd_export(args: argparse.Namespace) -> int:
    parts = getattr(args, "partition_by", None)
    out = _existing_log(args).export(args.experiment, args.dest, partition_by=parts)
    _say(f"wrote {out}/{'runs/ (partitioned by ' + ', '.join(parts) + ')' if parts else 'runs.parquet'}"
         f" and {out}/grades.parquet")
    return 0
    return 0


def _notebook_value(text: str) -> Any:
    """A -p value as papermill reads it: JSON (numbers, true/false/null, lists) or else a string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


@command("run-notebook")
def cmd_run_notebook(args: argparse.Namespace) -> int:
    from .notebooks import check_parameters, run_grid, run_notebook
    from .tables import summary

    params = {k: _notebook_value(v) for k, v in (args.parameter or [])}
    check_parameters(params)  # before anything echoes them
    kwargs = dict(output_dir=args.output_dir, log=args.log, html=not args.no_html, echo=args.echo,
                  timeout_s=args.cell_timeout)
    if args.grid:
        grid = {g[0]: [_notebook_value(v) for v in g[1:]] for g in args.grid}
        if args.output_dir:
            kwargs.pop("output_dir")
        result = run_grid(args.notebook, grid, base=params, **kwargs)
        print(f"{len(result.runs)} of {len(result.runs) + len(result.failures)} parameter sets ran")
        _print_df(result.summary())
        return 0 if not result.failures else 1
    _say(f"running {args.notebook} with papermill ({', '.join(f'{k}={v!r}' for k, v in params.items()) or 'defaults'})",
          flush=True)
    run = run_notebook(args.notebook, params, experiment_id=args.id, **kwargs)
    df = run.runs()
    print()
    if df.empty:
        _say(f"the notebook made no model calls under experiment {run.experiment_id}")
    else:
        _print_df(summary(df)[["n", "answered", "escaped", "errors", "mean_latency_ms", "output_tokens", "cost_usd"]])
        from .findings import findings
        from .store import RunLog

        print()  # the notebook's own findings, read back from the log (its grades included)
        print(findings(df, RunLog(run.log_path).grades(run.experiment_id), experiment_id=run.experiment_id))
    _say(f"\nexperiment {run.experiment_id}: {len(df)} calls, notebook ran in {run.wall_s:.1f}s")
    _say(f"Log:      {run.log_path}")
    _say(f"Notebook: {run.notebook}")
    if run.html:
        _say(f"HTML:     {run.html}  (self-contained; opens offline)")
    return 0


@command("export-html")
def cmd_export_html(args: argparse.Namespace) -> int:
    from .report import export_html

    out = export_html(args.notebook, args.dest)
    _say(f"wrote {out}")
    return 0


@command("index")
def cmd_index(args: argparse.Namespace) -> int:
    from .report import write_index

    out = write_index(args.results)
    _say(f"wrote {out}")
    return 0


@command("batch")
def cmd_batch(args: argparse.Namespace) -> int:
    from . import batch

    if args.batch_command == "submit":
        from .experiments import experiment

        exp = experiment(
            args.prompt, inputs=args.inputs, model=args.model, repeats=args.repeats, variants=args.variant,
            params=dict(args.param or []), seed=args.seed, budget_usd=args.budget, resume=args.resume,
            log=args.log, id=args.id, tags=args.tag,
        )
        run = batch.submit(exp)
        _say(f"experiment {exp.id}: {len(exp.plan())} calls submitted in {len(run.batches)} batch(es)")
        _say(f"Poll it (from any session): python -m lab batch poll {exp.id}" + (f" --log {args.log}" if args.log else ""))
        return 0
    if args.batch_command == "poll":
        run = batch.poll(args.experiment, log=args.log, wait=args.wait, interval_s=args.interval,
                         timeout_s=args.timeout)
    else:
        run = batch.cancel(args.experiment, log=args.log)
    _print_df(run.batches[["provider", "model", "batch_id", "state", "request_count", "ingested_at"]])
    _say(f"\n{run.ingested} row(s) ingested now; " + ("every batch is in the log." if run.done else
          f"not done yet: poll again later (python -m lab batch poll {args.experiment})"))
    if run.done:
        print()
        _print_df(run.summary())
    return 0


@command("log")
def cmd_log(args: argparse.Namespace) -> int:
    from .store import RunLog
    from .store.merge import merge

    into = RunLog(args.into)
    merged = merge(args.sources, into)
    for m in merged:
        for conflict in m.conflicts[:20]:
            _say(f"refused: {conflict}", file=sys.stderr)
        if len(m.conflicts) > 20:
            _say(f"refused: {len(m.conflicts) - 20} more conflicting row(s) from {m.source}", file=sys.stderr)
        _say(f"merged {m.line()}")
    _say(f"into {into.path}")
    return 1 if any(m.conflicts for m in merged) else 0


def _add_log_parser(sub: Any) -> None:
    g = sub.add_parser("log", help="the run log itself: merge logs from other machines")
    gsub = g.add_subparsers(dest="log_command", required=True)
    m = gsub.add_parser("merge", help="copy experiments, runs, grades and events of SQLite logs into one log, "
                                      "each row exactly once (a second merge adds nothing)")
    m.add_argument("sources", nargs="+", metavar="SRC", help="run logs to merge from (SQLite files)")
    m.add_argument("--into", required=True, metavar="DEST",
                   help="the log merged into: a SQLite file or a postgresql:// URL")
    m.add_argument("--log", default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def _add_batch_parser(sub: Any) -> None:
    b = sub.add_parser("batch", help="large runs through provider batch APIs (half price, results within 24h)")
    bsub = b.add_subparsers(dest="batch_command", required=True)
    s = bsub.add_parser("submit", help="submit an experiment as provider batches (anthropic: and openai: models)")
    s.add_argument("prompt", help="prompt file (YAML)")
    s.add_argument("--inputs", "-i", help="input set (YAML, CSV or JSONL)")
    s.add_argument("--model", "-m", action="append", required=True, help="model string (repeatable)")
    s.add_argument("--repeats", "-n", type=int, default=1)
    s.add_argument("--variant", "-v", action="append", help="only this variant (repeatable)")
    s.add_argument("--tag", "-t", action="append", help="only inputs with this tag (repeatable)")
    s.add_argument("--param", "-p", action="append", type=_param, help="override a parameter: NAME=VALUE")
    s.add_argument("--seed", type=int)
    s.add_argument("--budget", type=float, help="refuse if the batch could cost more (at batch prices)")
    s.add_argument("--resume", action="store_true", help="submit only calls experiment --id has not finished")
    s.add_argument("--id", help="experiment id")
    p = bsub.add_parser("poll", help="check an experiment's batches; ingest the ended ones as run rows")
    p.add_argument("experiment")
    p.add_argument("--wait", action="store_true", help="keep polling until every batch is in the log")
    p.add_argument("--interval", type=float, default=60.0, help="seconds between polls with --wait")
    p.add_argument("--timeout", type=float, help="give up waiting after this many seconds")
    c = bsub.add_parser("cancel", help="cancel an experiment's unfinished batches (then poll to ingest)")
    c.add_argument("experiment")
    for x in (s, p, c):
        x.add_argument("--log", default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lab", description="promptlab: prompt experiments, logged.")
    p.add_argument("--log", help="run log: a file path or a postgresql:// URL "
                                 "(default $PROMPTLAB_LOG or results/promptlab.db)")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run an experiment: every variant over an input set")
    r.add_argument("prompt", help="prompt file (YAML), e.g. prompts/sentiment.yaml")
    r.add_argument("--inputs", "-i", help="input set (YAML, CSV or JSONL)")
    r.add_argument("--model", "-m", action="append", help="model string (repeatable); default local:smollm2")
    r.add_argument("--repeats", "-n", type=int, default=1)
    r.add_argument("--variant", "-v", action="append", help="only this variant (repeatable)")
    r.add_argument("--tag", "-t", action="append", help="only inputs with this tag (repeatable)")
    r.add_argument("--split", choices=["dev", "held_out", "all"],
                   help="part of a split input set (lab.split_inputs); default: dev when the set has a split")
    r.add_argument("--param", "-p", action="append", type=_param, help="override a parameter: NAME=VALUE")
    r.add_argument("--seed", type=int)
    r.add_argument("--concurrency", type=int)
    r.add_argument("--budget", type=float, help="stop before spending more than this many US dollars")
    r.add_argument("--replay", action="store_true", help="serve identical calls from the log")
    r.add_argument("--resume", action="store_true", help="skip calls experiment --id already finished")
    r.add_argument("--id", help="experiment id (needed for --resume)")
    r.add_argument("--new-version", action="store_true",
                   help="with --resume: the prompt file changed since; run the new version's calls under this id")
    r.add_argument("--progress", choices=["auto", "text", "off"])
    r.add_argument("--max-calls", type=int, metavar="N",
                   help="run a plan of up to N calls (default $PROMPTLAB_MAX_CALLS or 1,000,000; larger plans are refused)")
    r.add_argument("--log", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    s = sub.add_parser("runs", help="list the experiments in the log")
    s.add_argument("--log", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    sh = sub.add_parser("show", help="one experiment's summary and findings")
    sh.add_argument("experiment")
    sh.add_argument("--outputs", action="store_true", help="also list every output")
    sh.add_argument("--summary-only", action="store_true",
                    help="only the summary table (computed in SQL; fast on a huge experiment), no findings")
    sh.add_argument("--log", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    e = sub.add_parser("export", help="write an experiment to Parquet")
    e.add_argument("experiment")
    e.add_argument("dest", nargs="?", default=None, help="folder (default results/exports/<experiment>)")
    e.add_argument("--partition-by", action="append", metavar="COLUMN",
                   help="write runs/ as a Hive-partitioned dataset by this column (repeatable: variant, model, date)")
    e.add_argument("--log", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    nb = sub.add_parser("run-notebook", help="execute a notebook with papermill into results/<experiment>/, plus HTML")
    nb.add_argument("notebook", help="a notebook with a 'parameters' cell, e.g. notebooks/persona_vs_honest.ipynb")
    nb.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"),
                    help="set a parameter (repeatable); values are JSON or text: -p repeats 5 -p model local:smollm2")
    nb.add_argument("-g", "--grid", nargs="+", action="append", metavar="NAME VALUE",
                    help="run once per value, one after another (repeatable: every combination): -g repeats 2 5")
    nb.add_argument("--id", help="experiment id (default <notebook>-<time>-<hex>)")
    nb.add_argument("--output-dir", help="where the executed notebook and HTML go (default results/<experiment>/)")
    nb.add_argument("--no-html", action="store_true", help="skip the HTML copy")
    nb.add_argument("--echo", action="store_true", help="stream the cells' output here while it runs")
    nb.add_argument("--cell-timeout", type=float, help="seconds a cell may run before the run fails")
    nb.add_argument("--log", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    eh = sub.add_parser("export-html", help="a self-contained HTML copy of an executed notebook (plotly offline)")
    eh.add_argument("notebook")
    eh.add_argument("dest", nargs="?", default=None, help="HTML path (default: next to the notebook)")
    eh.add_argument("--log", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    ix = sub.add_parser("index", help="write results/index.html: every report with its question, headline, model, n, date")
    ix.add_argument("results", nargs="?", default="results", help="the results folder (default: results)")
    ix.add_argument("--log", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    _add_batch_parser(sub)
    _add_log_parser(sub)
    return p


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail on the closed pipe again."""
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout is not a real file (pytest's capture)
        pass


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "model", "unset") is None:
        args.model = "local:smollm2"
    elif isinstance(getattr(args, "model", None), list) and len(args.model) == 1:
        args.model = args.model[0]
    try:
        if args.command == "export" and args.dest is None:
            args.dest = str(path_under("results/exports", args.experiment, what="experiment id", error=LabError))
        return _COMMANDS[args.command](args)
    except LabError as exc:
        _say(f"error: {redact(str(exc))}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `python -m lab show ... | head`: the reader has all it wants
        _silence_stdout()
        return 0
    except KeyboardInterrupt:
        print("interrupted; every finished call is in the log (resume with --resume --id ...)", file=sys.stderr)
        return 130
