"""``python -m lab``: run experiments, list and show them, export them.

    python -m lab run prompts/sentiment.yaml --inputs prompts/sentiment_inputs.yaml --repeats 3
    python -m lab runs
    python -m lab show <experiment-id>
    python -m lab export <experiment-id> results/exports/
    python -m lab log merge laptop.db ci-runner.db --into postgresql://ann@db.example/lab

One click group; each command is a small function. ``--log`` is one option, accepted before the
command name or after it (the hints this module prints put it after).
"""

from __future__ import annotations

import gc
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click

from .errors import LabError
from .names import path_under, terminal_text
from .secrets import redact

if TYPE_CHECKING:  # pandas is imported by the commands that print tables (`--help` stays fast)
    import pandas as pd

F = TypeVar("F", bound=Callable[..., Any])


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


# ---- the group, its one --log option, and how a command is declared ------------------------------

class _Group(click.Group):
    """A group whose help lists its commands in the order they are declared here, not sorted."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)


class _Lab(_Group):
    """The root group: what a command raises becomes the exit code here, for every command at once."""

    group_class = _Group

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LabError as exc:
            _say(f"error: {redact(str(exc))}", file=sys.stderr)
            return 2
        except BrokenPipeError:  # `python -m lab show ... | head`: the reader has all it wants
            _silence_stdout()
            return 0
        except KeyboardInterrupt:
            print("interrupted; every finished call is in the log (resume with --resume --id ...)", file=sys.stderr)
            return 130


def _log_value(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A command's ``--log``: its own when given after the command name, else the group's. None
    leaves the choice to the store ($PROMPTLAB_LOG, else results/promptlab.db)."""
    if value is None and ctx.parent is not None:
        return ctx.find_root().params.get("log")
    return value


def log_option(*, hidden: bool = True) -> Callable[[F], F]:
    """``--log``, the one option every command takes (listed in the group's help only)."""
    return click.option("--log", default=None, hidden=hidden, callback=_log_value,
                        help="run log: a file path or a postgresql:// URL (default $PROMPTLAB_LOG or results/promptlab.db)")


@click.group(cls=_Lab, context_settings={"help_option_names": ["-h", "--help"]})
@log_option(hidden=False)
def cli(log: str | None) -> None:
    """promptlab: prompt experiments, logged."""


def _command(group: click.Group, name: str, summary: str, *, cls: type[click.Command] | None = None,
             **arguments: str) -> Callable[[F], Any]:
    """A command of ``group`` listed as ``summary``; ``arguments`` says what its positional
    arguments are (click's help has no line for them otherwise)."""
    text = summary
    if arguments:
        width = max(len(a) for a in arguments)
        text += "\n\n\b\nArguments:\n" + "\n".join(f"  {a.upper().ljust(width)}  {h}" for a, h in arguments.items())
    return group.command(name, cls=cls, help=text, short_help=summary)


# ---- options two commands share ----------------------------------------------------------------

def _name_value(ctx: click.Context, param: click.Parameter, values: Sequence[str]) -> list[tuple[str, Any]]:
    """``--param NAME=VALUE`` (repeatable): VALUE as JSON when it parses, else as text."""
    pairs = []
    for text in values:
        if "=" not in text:
            raise click.BadParameter(f"--param wants NAME=VALUE, got {redact(text)!r}", ctx, param)
        k, v = text.split("=", 1)
        pairs.append((k, _notebook_value(v)))
    return pairs


def _models(given: Sequence[str]) -> str | list[str] | None:
    """Repeated ``--model``: one model as a string, several as a list, none as None."""
    return None if not given else given[0] if len(given) == 1 else list(given)


def _experiment_options(fn: F) -> F:
    """The options ``run`` and ``batch submit`` take alike: what to run."""
    for option in reversed([
        click.option("--inputs", "-i", help="input set (YAML, CSV or JSONL)"),
        click.option("--repeats", "-n", type=int, default=1),
        click.option("--variant", "-v", multiple=True, help="only this variant (repeatable)"),
        click.option("--tag", "-t", multiple=True, help="only inputs with this tag (repeatable)"),
        click.option("--param", "-p", multiple=True, callback=_name_value, help="override a parameter: NAME=VALUE"),
        click.option("--seed", type=int),
    ]):
        fn = option(fn)
    return fn


# ---- run, runs, show, export -------------------------------------------------------------------

@_command(cli, "run", "run an experiment: every variant over an input set",
          prompt="prompt file (YAML), e.g. prompts/sentiment.yaml")
@click.argument("prompt")
@_experiment_options
@click.option("--model", "-m", multiple=True, help="model string (repeatable); default local:smollm2")
@click.option("--split", type=click.Choice(["dev", "held_out", "all"]),
              help="part of a split input set (lab.split_inputs); default: dev when the set has a split")
@click.option("--concurrency", type=int)
@click.option("--budget", type=float, help="stop before spending more than this many US dollars")
@click.option("--replay", is_flag=True, help="serve identical calls from the log")
@click.option("--resume", is_flag=True, help="skip calls experiment --id already finished")
@click.option("--id", "exp_id", help="experiment id (needed for --resume)")
@click.option("--new-version", is_flag=True,
              help="with --resume: the prompt file changed since; run the new version's calls under this id")
@click.option("--progress", type=click.Choice(["auto", "text", "off"]))
@click.option("--max-calls", type=int, metavar="N",
              help="run a plan of up to N calls (default $PROMPTLAB_MAX_CALLS or 1,000,000; larger plans are refused)")
@log_option()
def cmd_run(prompt: str, inputs: str | None, repeats: int, variant: tuple[str, ...], tag: tuple[str, ...],
            param: list[tuple[str, Any]], seed: int | None, model: tuple[str, ...], split: str | None,
            concurrency: int | None, budget: float | None, replay: bool, resume: bool, exp_id: str | None,
            new_version: bool, progress: str | None, max_calls: int | None, log: str | None) -> int:
    from .config import DEFAULT_MODEL
    from .experiments import experiment

    exp = experiment(
        prompt, inputs=inputs, model=_models(model) or DEFAULT_MODEL, repeats=repeats, variants=list(variant) or None,
        params=dict(param), seed=seed, concurrency=concurrency, budget_usd=budget,
        replay=replay, resume=resume, log=log, id=exp_id, tags=list(tag) or None,
        progress=progress, max_calls=max_calls, split=split,
        new_version=new_version,
    )
    _say(f"experiment {exp.id}: {exp.describe()}", flush=True)
    runs = exp.run()
    made, skipped, wall_s = len(runs), runs.skipped, runs.wall_s
    run_log, exp_id, prompt_file = exp.log, exp.id, exp.prompt
    # everything below reads the log, the columns it needs only: the run's records and the
    # experiment's rendered plan are let go before the findings load pandas
    del runs, exp
    gc.collect()
    print()
    _print_rows(*run_log.summary_rows(exp_id))  # computed in SQL, as `show` prints it
    sys.stdout.flush()
    _grade_and_print_findings(run_log, exp_id, prompt_file)
    extra = f", {skipped} already done (resumed)" if skipped else ""
    _say(f"\n{made} calls in {wall_s:.1f}s{extra}. Log: {run_log.path}  (experiment {exp_id})")
    _say(f"Read it back: python -m lab show {exp_id}" + (f" --log {log}" if log else ""))
    return 0


def _grade_and_print_findings(log: Any, exp_id: str, prompt: Any) -> None:
    """Grade with the prompt file's grader (or the default one when inputs have expected answers),
    then print the findings block. Both read the log's rows as plain tuples, the columns they use
    only (pandas is never loaded): a 20k-call run's messages and parameters are never read."""
    from .findings import from_log
    from .graders import grader_from_spec
    from .grades import grade_stored
    from .holdout import with_selection

    spec = getattr(prompt, "grader", None)
    if spec and spec.get("kind") == "judge":  # a judge reads the whole row and calls a model
        from .grades import grade
        from .techniques._common import resolve_graders

        grade(log.runs(experiment=exp_id), resolve_graders(None, prompt), log=log)
    else:
        grade_stored(log, exp_id, [grader_from_spec(spec, prompt.grader_where)] if spec else [])
    print()
    print(with_selection(from_log(log, exp_id), log, exp_id))


def _existing_log(log: str | None) -> Any:
    """The run log a reading command names: a ``--log`` that does not exist is a mistake, not a new log."""
    from pathlib import Path

    from .errors import StoreError
    from .store import RunLog
    from .store.backend import is_url

    if log is not None and not is_url(log) and not Path(log).exists():
        raise StoreError(f"{log}: no run log there; check the path (reading commands never create a log; "
                         "`python -m lab runs` without --log lists the default one's experiments)")
    return RunLog(log)


@_command(cli, "runs", "list the experiments in the log")
@log_option()
def cmd_runs(log: str | None) -> int:
    run_log = _existing_log(log)
    df = run_log.experiments()
    if df.empty:
        print(f"no experiments in {run_log.path}")
        return 0
    _print_df(df[["id", "created_at", "prompt_path", "repeats", "calls", "answered", "escaped", "errors", "cost_usd"]])
    return 0


@_command(cli, "show", "one experiment's summary and findings")
@click.argument("experiment")
@click.option("--outputs", is_flag=True, help="also list every output")
@click.option("--summary-only", is_flag=True,
              help="only the summary table (computed in SQL; fast on a huge experiment), no findings")
@log_option()
def cmd_show(experiment: str, outputs: bool, summary_only: bool, log: str | None) -> int:
    run_log = _existing_log(log)
    by, cols, rows = run_log.summary_rows(experiment)  # computed by SQLite; printed before anything slower
    if not rows:
        _say(f"no runs for experiment {experiment!r} in {run_log.path}; `python -m lab runs` lists them",
             file=sys.stderr)
        return 2
    _print_rows(by, cols, rows)
    if summary_only:
        return 0
    sys.stdout.flush()
    from .findings import from_log

    print()
    print(from_log(run_log, experiment))  # the log's rows as tuples: no pandas
    if outputs:
        print()
        _print_outputs(run_log.runs(experiment=experiment,
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


@_command(cli, "export", "write an experiment to Parquet", dest="folder (default results/exports/<experiment>)")
@click.argument("experiment")
@click.argument("dest", required=False)
@click.option("--partition-by", multiple=True, metavar="COLUMN",
              help="write runs/ as a Hive-partitioned dataset by this column (repeatable: variant, model, date)")
@log_option()
def cmd_export(experiment: str, dest: str | None, partition_by: tuple[str, ...], log: str | None) -> int:
    parts = list(partition_by) or None
    if dest is None:
        dest = str(path_under("results/exports", experiment, what="experiment id", error=LabError))
    out = _existing_log(log).export(experiment, dest, partition_by=parts)
    _say(f"wrote {out}/{'runs/ (partitioned by ' + ', '.join(parts) + ')' if parts else 'runs.parquet'}"
         f" and {out}/grades.parquet")
    return 0


# ---- notebooks and reports ---------------------------------------------------------------------

def _notebook_value(text: str) -> Any:
    """A -p value as papermill reads it: JSON (numbers, true/false/null, lists) or else a string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _is_option(word: str) -> bool:
    """Whether a word on the command line starts an option (a negative number is a value)."""
    if not word.startswith("-") or word == "-":
        return False
    try:
        float(word)
    except ValueError:
        return True
    return False


def _join_grid_words(args: list[str]) -> list[str]:
    """``-g NAME VALUE...`` takes every word up to the next option. A click option takes a fixed
    number of words, so those words are joined into one (by NUL, which no argument can hold)
    before click parses the line; :func:`_grid_value` splits them again."""
    out: list[str] = []
    i = 0
    while i < len(args):
        if args[i] == "--":
            return out + args[i:]
        out.append(args[i])
        i += 1
        if out[-1] in ("-g", "--grid"):
            end = i
            while end < len(args) and not _is_option(args[end]):
                end += 1
            out += ["\0".join(args[i:end])] if end > i else []
            i = end
    return out


class _GridCommand(click.Command):
    """A command with a ``-g NAME VALUE...`` option (see :func:`_join_grid_words`)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, _join_grid_words(args))


def _grid_value(ctx: click.Context, param: click.Parameter, values: Sequence[str]) -> list[list[str]]:
    return [v.split("\0") for v in values]


@_command(cli, "run-notebook", "execute a notebook with papermill into results/<experiment>/, plus HTML",
          cls=_GridCommand,
          notebook="a notebook with a 'parameters' cell, e.g. notebooks/persona_vs_honest.ipynb")
@click.argument("notebook")
@click.option("-p", "--parameter", nargs=2, multiple=True, metavar="NAME VALUE",
              help="set a parameter (repeatable); values are JSON or text: -p repeats 5 -p model local:smollm2")
@click.option("-g", "--grid", multiple=True, callback=_grid_value, metavar="NAME VALUE...",
              help="run once per value, one after another (repeatable: every combination): -g repeats 2 5")
@click.option("--id", "exp_id", help="experiment id (default <notebook>-<time>-<hex>)")
@click.option("--output-dir", help="where the executed notebook and HTML go (default results/<experiment>/)")
@click.option("--no-html", is_flag=True, help="skip the HTML copy")
@click.option("--echo", is_flag=True, help="stream the cells' output here while it runs")
@click.option("--cell-timeout", type=float, help="seconds a cell may run before the run fails")
@log_option()
def cmd_run_notebook(notebook: str, parameter: tuple[tuple[str, str], ...], grid: list[list[str]],
                     exp_id: str | None, output_dir: str | None, no_html: bool, echo: bool,
                     cell_timeout: float | None, log: str | None) -> int:
    from .notebooks import check_parameters, run_grid, run_notebook

    params = {k: _notebook_value(v) for k, v in parameter}
    check_parameters(params)  # before anything echoes them
    kwargs: dict[str, Any] = dict(output_dir=output_dir, log=log, html=not no_html, echo=echo, timeout_s=cell_timeout)
    if grid:
        if output_dir:
            kwargs.pop("output_dir")
        result = run_grid(notebook, {g[0]: [_notebook_value(v) for v in g[1:]] for g in grid}, base=params, **kwargs)
        print(f"{len(result.runs)} of {len(result.runs) + len(result.failures)} parameter sets ran")
        _print_df(result.summary())
        return 0 if not result.failures else 1
    _say(f"running {notebook} with papermill ({', '.join(f'{k}={v!r}' for k, v in params.items()) or 'defaults'})",
          flush=True)
    run = run_notebook(notebook, params, experiment_id=exp_id, **kwargs)
    _print_notebook_run(run)
    return 0


def _print_notebook_run(run: Any) -> None:
    """An executed notebook's summary (from the log, as `show` prints it), findings and files."""
    from .store import RunLog

    run_log = RunLog(run.log_path)
    df = run.runs()
    print()
    if df.empty:
        _say(f"the notebook made no model calls under experiment {run.experiment_id}")
    else:
        _print_rows(*run_log.summary_rows(run.experiment_id))
        from .findings import findings

        print()  # the notebook's own findings, read back from the log (its grades included)
        print(findings(df, run_log.grades(run.experiment_id), experiment_id=run.experiment_id))
    _say(f"\nexperiment {run.experiment_id}: {len(df)} calls, notebook ran in {run.wall_s:.1f}s")
    _say(f"Log:      {run.log_path}")
    _say(f"Notebook: {run.notebook}")
    if run.html:
        _say(f"HTML:     {run.html}  (self-contained; opens offline)")


@_command(cli, "export-html", "a self-contained HTML copy of an executed notebook (plotly offline)",
          dest="HTML path (default: next to the notebook)")
@click.argument("notebook")
@click.argument("dest", required=False)
@log_option()
def cmd_export_html(notebook: str, dest: str | None, log: str | None) -> int:
    from .report import export_html

    _say(f"wrote {export_html(notebook, dest)}")
    return 0


@_command(cli, "index", "write results/index.html: every report with its question, headline, model, n, date",
          results="the results folder (default: results)")
@click.argument("results", default="results", required=False)
@log_option()
def cmd_index(results: str, log: str | None) -> int:
    from .report import write_index

    _say(f"wrote {write_index(results)}")
    return 0


# ---- batch submit | poll | cancel --------------------------------------------------------------

@cli.group("batch", short_help="large runs through provider batch APIs (half price, results within 24h)")
def batch_group() -> None:
    """large runs through provider batch APIs (half price, results within 24h)"""


@_command(batch_group, "submit", "submit an experiment as provider batches (anthropic: and openai: models)",
          prompt="prompt file (YAML)")
@click.argument("prompt")
@_experiment_options
@click.option("--model", "-m", multiple=True, required=True, help="model string (repeatable)")
@click.option("--budget", type=float, help="refuse if the batch could cost more (at batch prices)")
@click.option("--resume", is_flag=True, help="submit only calls experiment --id has not finished")
@click.option("--id", "exp_id", help="experiment id")
@log_option()
def cmd_batch_submit(prompt: str, inputs: str | None, repeats: int, variant: tuple[str, ...], tag: tuple[str, ...],
                     param: list[tuple[str, Any]], seed: int | None, model: tuple[str, ...], budget: float | None,
                     resume: bool, exp_id: str | None, log: str | None) -> int:
    from . import batch
    from .experiments import experiment

    exp = experiment(
        prompt, inputs=inputs, model=_models(model), repeats=repeats, variants=list(variant) or None,
        params=dict(param), seed=seed, budget_usd=budget, resume=resume,
        log=log, id=exp_id, tags=list(tag) or None,
    )
    run = batch.submit(exp)
    _say(f"experiment {exp.id}: {len(exp.plan())} calls submitted in {len(run.batches)} batch(es)")
    _say(f"Poll it (from any session): python -m lab batch poll {exp.id}" + (f" --log {log}" if log else ""))
    return 0


@_command(batch_group, "poll", "check an experiment's batches; ingest the ended ones as run rows")
@click.argument("experiment")
@click.option("--wait", is_flag=True, help="keep polling until every batch is in the log")
@click.option("--interval", type=float, default=60.0, help="seconds between polls with --wait")
@click.option("--timeout", type=float, help="give up waiting after this many seconds")
@log_option()
def cmd_batch_poll(experiment: str, wait: bool, interval: float, timeout: float | None, log: str | None) -> int:
    from . import batch

    _print_batches(batch.poll(experiment, log=log, wait=wait, interval_s=interval, timeout_s=timeout), experiment)
    return 0


@_command(batch_group, "cancel", "cancel an experiment's unfinished batches (then poll to ingest)")
@click.argument("experiment")
@log_option()
def cmd_batch_cancel(experiment: str, log: str | None) -> int:
    from . import batch

    _print_batches(batch.cancel(experiment, log=log), experiment)
    return 0


def _print_batches(run: Any, experiment: str) -> None:
    _print_df(run.batches[["provider", "model", "batch_id", "state", "request_count", "ingested_at"]])
    _say(f"\n{run.ingested} row(s) ingested now; " + ("every batch is in the log." if run.done else
          f"not done yet: poll again later (python -m lab batch poll {experiment})"))
    if run.done:
        print()
        _print_df(run.summary())


# ---- log merge ---------------------------------------------------------------------------------

@cli.group("log", short_help="the run log itself: merge logs from other machines")
def log_group() -> None:
    """the run log itself: merge logs from other machines"""


@_command(log_group, "merge", "copy experiments, runs, grades and events of SQLite logs into one log, "
                              "each row exactly once (a second merge adds nothing)",
          src="run logs to merge from (SQLite files)")
@click.argument("sources", nargs=-1, required=True, metavar="SRC...")
@click.option("--into", required=True, metavar="DEST", help="the log merged into: a SQLite file or a postgresql:// URL")
@log_option()
def cmd_log_merge(sources: tuple[str, ...], into: str, log: str | None) -> int:
    from .store import RunLog
    from .store.merge import merge

    target = RunLog(into)
    merged = merge(list(sources), target)
    for m in merged:
        for conflict in m.conflicts[:20]:
            _say(f"refused: {conflict}", file=sys.stderr)
        if len(m.conflicts) > 20:
            _say(f"refused: {len(m.conflicts) - 20} more conflicting row(s) from {m.source}", file=sys.stderr)
        _say(f"merged {m.line()}")
    _say(f"into {target.path}")
    return 1 if any(m.conflicts for m in merged) else 0


# ---- entry point -------------------------------------------------------------------------------

def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail on the closed pipe again."""
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout is not a real file (pytest's capture)
        pass


def main(argv: list[str] | None = None) -> int:
    """Run one command line; the exit code: 0, 1 (some of it failed), 2 (a usage error, named by
    click, or a LabError, in one line), 130 (interrupted)."""
    try:
        return int(cli.main(args=argv, prog_name="python -m lab", standalone_mode=False) or 0)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:  # interrupted while the command line was read
        print("interrupted", file=sys.stderr)
        return 130
