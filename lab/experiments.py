"""An experiment: a prompt file's variants x an input set x models x repeats, planned, checked
before any call, registered in the run log and run through :class:`lab.runner.Runner`.

    exp = lab.experiment("prompts/sentiment.yaml", inputs="prompts/sentiment_inputs.yaml",
                         model="local:smollm2", repeats=3)
    exp.plan()      # the calls, in order (input, repeat, model, variant), each with its seed
    runs = exp.run()

``lab.experiment(...)`` builds one and checks it; :meth:`Experiment.register` is the one path by
which an experiment (its parameters, prompt versions and input set) enters the log. How it runs is
a :class:`lab.config.RunConfig`; the calls themselves (cache, limiter, budget) are the runner's.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, Unpack

from .config import DEFAULT_PARAMS, RunConfig, RunOptions
from .errors import GraderError, InputSetError, ParameterError
from .holdout import Part, choose_part
from .inputs import InputRow, InputSet, load_inputs, rows_from_records
from .logprobs import TOP_LOGPROBS
from .names import check_id, experiment_id, html_text
from .pricing import price_of
from .progress import Progress
from .prompts import PromptFile, Variant, load_prompt
from .providers import Provider, get_provider
from .runner import Call, Runner, run_sync
from .secrets import redact
from .seeds import derive_seed
from .store import RunLog, RunRecord

if TYPE_CHECKING:  # pandas is imported when a table is read, not to run calls
    import pandas as pd


class LoggedRows:
    """What an experiment's rows in its log read as: ``df`` (the run rows, as the log has them) and
    ``summary()`` (per variant and model: calls, outcomes, latency, tokens, cost; computed by the log)."""

    experiment_id: str
    log: RunLog

    @property
    def df(self) -> pd.DataFrame:
        return self.log.runs(experiment=self.experiment_id)

    def summary(self) -> pd.DataFrame:
        return self.log.summary(self.experiment_id)


@dataclass
class Runs(LoggedRows):
    """What a run did. ``df`` holds the experiment's rows as the log has them."""

    experiment_id: str
    log: RunLog
    records: list[RunRecord]
    skipped: int = 0
    stopped: str | None = None
    spent_usd: float = 0.0
    wall_s: float = 0.0

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


RunsLike: TypeAlias = "pd.DataFrame | Runs | str"  # rows, a run's result, or an experiment id


def runs_frame(runs: RunsLike, log: RunLog | None) -> tuple[pd.DataFrame, RunLog]:
    """The rows ``runs`` stands for and the log they live in (``log``, else the run's own, else the
    default log). Graders and judges take runs this way, so an unknown experiment id is a GraderError."""
    if isinstance(runs, str):
        log = log if log is not None else RunLog()
        df = log.runs(experiment=runs)
        if df.empty:
            raise GraderError(f"{log.path}: no runs for experiment {runs!r}; `python -m lab runs` lists them")
        return df, log
    if isinstance(runs, Runs):
        return runs.df, (log if log is not None else runs.log)
    return runs, (log if log is not None else RunLog())


class Experiment:
    """A planned experiment. Nothing is called until :meth:`run`; :meth:`plan` validates everything."""

    def __init__(self, prompt: str | Path | PromptFile, inputs: str | Path | InputSet | list[dict] | None = None, *,
                 variants: list[str] | None = None, resume: bool = False, log: RunLog | str | Path | None = None,
                 id: str | None = None, name: str | None = None, tags: list[str] | None = None,
                 split: Part | None = None, new_version: bool = False, config: RunConfig | None = None,
                 **options: Unpack[RunOptions]):
        """What to run (``prompt``, ``inputs``, ``variants``, ``tags``, ``split``; ``log``, ``id``,
        ``name``, ``resume``) and how (a :class:`lab.config.RunConfig` as ``config``, and/or its
        options as keywords: ``model``, ``repeats``, ``params``, ``seed``, ``concurrency``,
        ``budget_usd``, ``replay``, ``provider_options``, ``progress``, ``confidence``, ``max_calls``)."""
        self.config = cfg = RunConfig.of(config, **options)
        self.prompt = prompt if isinstance(prompt, PromptFile) else load_prompt(prompt)
        if inputs is None:
            needed = sorted(set().union(*(v.variables for v in self.prompt.variants.values())))
            if needed:
                raise InputSetError(
                    f"{self.prompt.path}: the templates use {needed}; give an input set (inputs=... or --inputs)"
                )
            self.inputs = InputSet("<no inputs>", (InputRow(id="default", vars={}),), "default")
        elif isinstance(inputs, InputSet):
            self.inputs = inputs
        elif isinstance(inputs, list):
            self.inputs = rows_from_records(inputs)
        else:
            self.inputs = load_inputs(inputs)
        if tags:
            self.inputs = self.inputs.tagged(*tags)
            if not len(self.inputs):
                raise ParameterError(f"no input in {self.inputs.path} carries any of the tags {tags}")
        self.models = list(cfg.models)
        self.repeats = cfg.repeats
        self.variants = self.prompt.select(variants)
        self.params = dict(cfg.params)
        self.seed = cfg.seed
        self.concurrency = cfg.concurrency
        self.budget_usd = cfg.budget_usd
        self.replay = cfg.replay
        self.resume = resume
        self.new_version = bool(new_version)  # resume an experiment whose prompt changed, with the new version
        if resume and id is None:
            raise ParameterError("resume=True needs the id of the experiment to resume (id=...)")
        self.log = log if isinstance(log, RunLog) else RunLog(log)
        # an input set with a split (lab.holdout) runs on its dev part unless split= says otherwise
        self.split: str | None = None
        self.split_note: str | None = None
        if inputs is not None:
            self.inputs, self.split, self.split_note = choose_part(self.inputs, self.log, split)
        self.name = name or self.prompt.task
        self.id = id or experiment_id(self.name)
        # the id names folders (results/<id>/, exports), so it keeps to the name rule; see lab.names
        check_id(self.id, "experiment id" if id else f"experiment name {self.name!r} makes an id that", ParameterError)
        self.provider_options = dict(cfg.provider_options)
        self.progress = cfg.progress
        self.confidence = cfg.confidence  # ask for token log-probabilities where the provider returns them
        self.no_confidence: list[str] = []  # models that return none: "no confidence available"
        self.max_calls = cfg.max_calls
        self._calls: list[Call] | None = None
        self._checked: tuple[dict[str, Provider], dict[str, dict[str, Any]], list[dict[str, list]]] | None = None

    @property
    def size(self) -> int:
        """How many calls the plan holds (variants x inputs x models x repeats), without planning them."""
        return len(self.variants) * len(self.inputs) * len(self.models) * self.repeats

    def describe(self) -> str:
        """The plan in one line: its size, how it is made up, and what it could cost."""
        return (f"{self.size:,} calls ({len(self.variants)} variants x {len(self.inputs)} inputs x "
                f"{len(self.models)} models x {self.repeats:,} repeats); {self.cost_estimate()}")

    def cost_estimate(self) -> str:
        """An upper estimate of the plan's cost in words, from the first input's rendered prompts and
        ``max_tokens`` (about 2 characters a token, as the budget check reckons)."""
        unknown = [m for m in self.models if price_of(m) is None]
        if unknown:
            return f"cost unknown (no price for {', '.join(map(redact, unknown))}; lab.pricing.set_price declares one)"
        row = next(iter(self.inputs))
        total = 0.0
        for v in self.variants:
            try:
                messages = v.render(row.vars, input_id=row.id)
            except Exception:  # reported properly by check(); an estimate must not fail first
                return "cost unknown (the first input does not render)"
            params = {**DEFAULT_PARAMS, **v.params, **self.params}
            for m in self.models:
                price = price_of(m)
                assert price is not None  # unknown prices returned above
                chars = sum(len(x["content"]) for x in messages)
                total += price.cost(chars // 2 + 8 * len(messages) + 16, int(params.get("max_tokens") or 1024)) or 0.0
        per_input = total
        est = per_input * len(self.inputs) * self.repeats
        return f"estimated cost up to ${est:,.2f}" if est else "no cost (local or free models)"

    def check(self) -> None:
        """Validate everything a run needs before any call: the plan's size against ``max_calls``,
        template variables and rendering for every input, model strings, keys, parameters and prices.
        Cheap in the number of repeats: calls themselves are made one at a time as the run pulls them."""
        if self._checked is not None:
            return
        if self.size > self.max_calls:
            raise ParameterError(
                f"the plan is {self.describe()}: more than max_calls={self.max_calls:,}; pass max_calls={self.size} "
                f"(CLI: --max-calls {self.size}) to run it anyway, or set PROMPTLAB_MAX_CALLS")
        self.inputs.check_variables({v.name: v.variables for v in self.variants})
        self.inputs.check_text_values({v.name: v.text_variables for v in self.variants})
        providers = {m: get_provider(m, **self.provider_options.get(m, {})) for m in self.models}
        if self.budget_usd is not None:
            unknown = [m for m in self.models if price_of(m) is None]
            if unknown:
                raise ParameterError(
                    f"a budget needs known prices, and {unknown} have none; declare one with lab.pricing.set_price(...)"
                )
        params = {}
        for v in self.variants:
            params[v.name] = {**DEFAULT_PARAMS, **v.params, **self.params}
            for provider in providers.values():
                provider.check_params(params[v.name])
            params[v.name].pop("seed", None)  # each call gets its own, below
        self.no_confidence = [m for m, p in providers.items() if self.confidence and not p.returns_logprobs]
        for m in self.no_confidence:
            print(f"{redact(m)}: no confidence available (it returns no token log-probabilities); the rest runs as usual")
        # rendered once per (input, variant): the repeats and models share it
        rendered = [{v.name: v.render(row.vars, input_id=row.id) for v in self.variants} for row in self.inputs]
        self._checked = (providers, params, rendered)

    def iter_plan(self) -> Iterator[Call]:
        """The plan's calls one at a time, in plan order (input, repeat, model, variant), built as
        they are taken. :meth:`plan` returns the same calls as a list once it has been called."""
        if self._calls is not None:
            yield from self._calls
            return
        self.check()
        assert self._checked is not None  # check() sets it
        providers, params, rendered = self._checked
        rng = random.SystemRandom()
        for row, messages in zip(self.inputs, rendered):
            for repeat in range(self.repeats):
                seed = derive_seed(self.seed, row.id, repeat) if self.seed is not None else rng.randrange(2**31 - 1)
                for m, provider in providers.items():
                    # a provider that honours seeds always gets one (recorded, so any sample can be redone)
                    sent_seed = seed if (self.seed is not None or provider.honours_seed) else None
                    for v in self.variants:
                        call_params = dict(params[v.name])
                        if sent_seed is not None:
                            call_params["seed"] = sent_seed
                        if self.confidence and provider.returns_logprobs:
                            call_params.update(logprobs=True, top_logprobs=TOP_LOGPROBS)
                        yield Call(model=m, messages=messages[v.name], params=call_params, repeat=repeat,
                                   seed=sent_seed, seed_chosen_by_user=self.seed is not None, variant=v, row=row,
                                   escape_hatch=v.escape_hatch)

    def _plan_keys(self) -> Iterator[tuple]:
        """Each planned call's resume key, in plan order, without building the calls (the model as
        the log holds it: secrets in a model string are redacted there)."""
        shown = {m: redact(m) for m in self.models}
        for row in self.inputs:
            for repeat in range(self.repeats):
                for m in self.models:
                    for v in self.variants:
                        yield (v.name, row.id, shown[m], repeat, 0, 0, 0, "answer")

    def _resumed(self, calls: Iterable[Call]) -> tuple[Iterable[Call], int]:
        """The calls a resumed run still makes, and how many it skips: those finished before (with
        ``new_version``, only those finished with the variant's current version)."""
        versions = {v.name: v.version for v in self.variants} if self.new_version else None
        done = self.log.finished_keys(self.id, versions=versions)
        skipped = sum(1 for k in self._plan_keys() if k in done)
        shown = {m: redact(m) for m in self.models}
        return (c for c in calls if (c.resume_key[:2] + (shown[c.model],) + c.resume_key[3:]) not in done), skipped

    def _check_resume_versions(self) -> None:
        """Refuse to resume with a variant whose prompt changed since the experiment ran it (the rows
        would mix two versions under one name) unless ``new_version`` asks for it."""
        if self.new_version:
            return
        logged = self.log.finished_versions(self.id)
        for v in self.variants:
            old = sorted(logged.get(v.name, set()) - {v.version})
            if old:
                raise ParameterError(
                    f"cannot resume {self.id!r}: variant {v.name!r} of {v.path} ran as version {', '.join(old)} and "
                    f"the file now gives version {v.version}; resume with new_version=True (CLI: --new-version) to "
                    "run the new version's calls under this id, or start a new experiment")

    def __repr__(self) -> str:
        return (f"Experiment({self.id!r}: {len(self.variants)} variant(s) x {len(self.inputs)} input(s) x "
                f"{len(self.models)} model(s) x {self.repeats} repeat(s), log={str(self.log.path)!r})")

    def plan(self) -> list[Call]:
        """Every call this experiment will make, rendered and checked, as a list; makes no model call.
        A run does not need it (it pulls calls from :meth:`iter_plan`); once made, a run uses this list."""
        if self._calls is None:
            self._calls = list(self.iter_plan())
        return self._calls

    def register(self, **extra: Any) -> None:
        """Record this experiment (once) and its prompt versions in the log: every way of running
        one (here, :mod:`lab.batch`, the workbench's input sets) goes through this. ``extra`` is
        added to the recorded parameters (e.g. ``mode="batch"``)."""
        self.log.add_experiment(self.id, name=self.name, prompt_path=self.prompt.path, inputs_path=self.inputs.path,
                                models=self.models, variants=[v.name for v in self.variants], repeats=self.repeats,
                                params={**self._params_record(), **extra})
        for v in self.variants:
            record_prompt_version(self.log, v)
        if self.split_note:  # the part of a split input set this runs on, said each time it runs
            print(self.split_note)

    def _params_record(self) -> dict[str, Any]:
        return {"prompt": self.prompt.path, "inputs": self.inputs.path, "models": self.models,
                "variants": [v.name for v in self.variants], "repeats": self.repeats, "params": self.params,
                "seed": self.seed, "concurrency": self.concurrency, "budget_usd": self.budget_usd,
                "replay": self.replay, "versions": {v.name: v.version for v in self.variants},
                "confidence": self.confidence, "no_confidence": self.no_confidence, "split": self.split}

    async def arun(self) -> Runs:
        """Run the experiment on the current event loop (``await exp.arun()`` in async code)."""
        self.check()
        if self.resume:
            self._check_resume_versions()
        self.register()
        total = self.size
        calls: Iterable[Call] = self.iter_plan()
        skipped = 0
        if self.resume:
            calls, skipped = self._resumed(calls)
        todo = total - skipped
        runner = Runner(self.log, self.id, concurrency=self.concurrency, budget_usd=self.budget_usd,
                        replay=self.replay, provider_options=self.provider_options)
        self.log.add_event(self.id, "started", calls=todo, skipped=skipped)
        progress = Progress(todo, self.id, self.progress)
        t0 = time.perf_counter()
        try:
            workers = sum(runner.limiter(m).ceiling for m in self.models)
            records = await runner.run_all(calls, progress, workers=min(workers, max(1, todo)))
        finally:
            progress.close()
            await runner.aclose()
        wall = time.perf_counter() - t0
        if runner.stopped:
            skipped_by_budget = todo - len(records)
            msg = (f"stopped by budget: {len(records)} of {todo} calls made, ${runner.spent_usd:.4f} spent "
                   f"of ${self.budget_usd:.4f}; {skipped_by_budget} not made")
            print(msg)
        self.log.add_event(self.id, "finished", made=runner.counts["made"], replayed=runner.counts["replayed"],
                           skipped=skipped, stopped=runner.stopped, wall_s=round(wall, 3))
        return Runs(self.id, self.log, records, skipped=skipped, stopped=runner.stopped,
                    spent_usd=runner.spent_usd, wall_s=wall)

    def run(self) -> Runs:
        """Run every planned call (with a progress bar); works in scripts and in notebooks."""
        return run_sync(self.arun)


def experiment(prompt: str | Path | PromptFile, inputs: str | Path | InputSet | list[dict] | None = None,
               **kwargs: Any) -> Experiment:
    """Plan an experiment: every variant of ``prompt`` over ``inputs`` for each model and repeat.

    Keyword arguments: ``model`` (a string or list, default ``local:smollm2``), ``repeats``,
    ``variants`` (names; default all), ``params`` (override the file's: temperature,
    max_tokens, ...), ``seed`` (makes runs reproducible and pairs variants on the same seeds),
    ``concurrency`` (per model), ``budget_usd``, ``replay``, ``resume`` with ``id``, ``log``,
    ``tags`` (only inputs with these tags), ``progress`` (``auto``, ``text``, ``off``),
    ``confidence`` (True: ask providers that can for token log-probabilities and keep a small
    confidence record per run, see :mod:`lab.logprobs`; others say "no confidence available"),
    ``max_calls`` (a plan larger than this, 1,000,000 by default or ``$PROMPTLAB_MAX_CALLS``, is refused),
    ``split`` (an input set split by ``lab.split_inputs`` runs on its ``"dev"`` part by default;
    ``"held_out"`` or ``"all"`` say otherwise, explicitly).
    Errors in any of them are raised here or by :meth:`Experiment.plan`, before any call.
    """
    exp = Experiment(prompt, inputs, **kwargs)
    exp.check()
    return exp


def record_prompt_version(log: RunLog, v: Variant) -> None:
    """Keep ``v``'s templates in the log under its version, so any earlier version can be read back."""
    log.add_prompt_version(v.version, prompt_path=v.path, task=v.task, variant=v.name, templates=v.templates,
                           params=v.params, escape_hatch=v.escape_hatch.text if v.escape_hatch else None)
