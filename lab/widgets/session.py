"""An interactive session: the plain-Python object behind the workbench widget.

Everything the workbench does is a method here, usable without widgets:

    s = Session("prompts/sentiment.yaml", variant="honest", model="local:smollm2")
    s.run({"text": "Great kettle"})   # one call, a new conversation
    s.retry()                         # another independent sample of the same call
    s.follow_up("Why?")               # a next turn in the same conversation
    s.critique(rounds=2)              # critique and revision rounds on the latest answer
    s.reset()                         # a clean context for the next call
    s.rate(run_id, 4, note="terse")   # a human rating, stored as a grade row

Every call is one row in the run log under the session's experiment id (``workbench-...``).
A template edited in place becomes a new prompt version, recorded in the log with its
templates, so any earlier version can be brought back (:meth:`Session.versions`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import random
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import jinja2
import pandas as pd
import jinja2.meta
from jinja2.sandbox import SandboxedEnvironment

from ..errors import CallCancelled, LabError, ParameterError, PromptFileError
from ..inputs import InputRow, load_inputs
from ..prompts import EscapeHatch, PromptFile, Variant, load_prompt, version_of
from ..progress import Progress
from ..runner import DEFAULT_MODEL, DEFAULT_PARAMS, Call, Runner, derive_seed, run_sync
from ..secrets import looks_like_secret
from ..store import RunLog, RunRecord, new_id
from ..techniques.critique import DEFAULT_RUBRIC, STOP_PHRASE, critique_messages, revision_messages

# What the model is asked in a self-critique round. Kept short: small models lose long instructions.

_PARSER = SandboxedEnvironment()


def find_prompt_files(folder: str | Path = "prompts") -> list[Path]:
    """Prompt files (YAML with ``task`` and ``variants``) under ``folder``, sorted."""
    out = []
    for p in sorted(Path(folder).rglob("*.y*ml")):
        try:
            load_prompt(p)
        except LabError:
            continue
        out.append(p)
    return out


def find_input_sets(folder: str | Path = "prompts") -> list[Path]:
    """Input sets (YAML, CSV, JSONL rows with ids) under ``folder``, sorted."""
    out = []
    for p in sorted(Path(folder).rglob("*")):
        if p.suffix.lower() not in (".yaml", ".yml", ".csv", ".jsonl"):
            continue
        try:
            load_inputs(p)
        except LabError:
            continue
        out.append(p)
    return out


def edit_variant(variant: Variant, templates: dict[str, str]) -> Variant:
    """``variant`` with some templates replaced (``{"system": ..., "user": ...}``), re-versioned.

    A role given as empty text is removed (a variant keeps at least a user template). Raises
    :class:`PromptFileError` on a template syntax error.
    """
    current = dict(variant.templates)
    for role, text in templates.items():
        if role not in ("system", "user"):
            raise ParameterError(f"edit_variant: role must be 'system' or 'user', got {role!r}")
        if text and text.strip():
            current[role] = text
        else:
            current.pop(role, None)
    if "user" not in current:
        raise PromptFileError(f"{variant.path}: variant {variant.name!r} needs a user template")
    new = tuple((r, current[r]) for r in ("system", "user") if r in current)
    needed: set[str] = set()
    for role, src in new:
        try:
            needed |= jinja2.meta.find_undeclared_variables(_PARSER.parse(src))
        except jinja2.TemplateSyntaxError as exc:
            raise PromptFileError(
                f"{variant.path}: variant {variant.name!r} {role} template, line {exc.lineno}: {exc.message}"
            ) from None
    return dataclasses.replace(variant, templates=new, version=version_of(new, variant.params, variant.escape_hatch),
                               variables=frozenset(needed))


@dataclass
class Turn:
    """One step of the conversation: the samples drawn for the same context (Retry adds samples)."""

    messages: list[dict[str, str]]
    samples: list[RunRecord] = field(default_factory=list)
    kind: str = "answer"  # answer | follow-up | critique | revision | compare | input set


class Session:
    """Single calls, retries, follow-ups and critique rounds on one prompt variant, all logged.

    Methods block until the call is logged (use them from a worker thread in a UI); :meth:`cancel`
    from another thread stops the call in flight (its row is not written).
    """

    def __init__(self, prompt: str | Path | PromptFile, variant: str | None = None, *, model: str = DEFAULT_MODEL,
                 params: dict[str, Any] | None = None, log: RunLog | str | Path | None = None,
                 experiment_id: str | None = None, provider_options: dict[str, dict[str, Any]] | None = None):
        self.log = log if isinstance(log, RunLog) else RunLog(log)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        self.experiment_id = experiment_id or f"workbench-{stamp}-{new_id()[:4]}"
        self.model = model
        self.params = dict(params or {})
        self.provider_options = provider_options or {}
        self.turns: list[Turn] = []
        self.conversation_id = new_id()
        self._registered = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self.set_prompt(prompt, variant)

    # ---- what to call ----------------------------------------------------------------------

    def set_prompt(self, prompt: str | Path | PromptFile, variant: str | None = None) -> None:
        """Use another prompt file (and variant; default its first)."""
        self.prompt = prompt if isinstance(prompt, PromptFile) else load_prompt(prompt)
        self.variant = self.prompt.variant(variant) if variant else next(iter(self.prompt.variants.values()))

    def set_variant(self, name: str) -> None:
        self.variant = self.prompt.variant(name)

    def edit(self, **templates: str) -> Variant:
        """Edit the current variant's templates in place (``system=...``, ``user=...``): a new
        version, recorded in the log now; the previous one stays in :meth:`versions`."""
        self.variant = edit_variant(self.variant, templates)
        self._record_version(self.variant)
        return self.variant

    def versions(self) -> list[tuple[str, str, dict[str, str]]]:
        """Every version of the current variant known to the log or the file, oldest first:
        ``(version, first_seen, {role: template})``."""
        file_v = self.prompt.variant(self.variant.name)
        seen: dict[str, tuple[str, str, dict[str, str]]] = {}
        df = self.log.prompt_versions(self.prompt.path)
        for row in df.itertuples():
            if row.variant == self.variant.name:
                seen.setdefault(row.version, (row.version, str(row.first_seen), {r: t for r, t in row.templates}))
        for v in (file_v, self.variant):
            seen.setdefault(v.version, (v.version, "not run yet", dict(v.templates)))
        return sorted(seen.values(), key=lambda t: t[1])

    def use_version(self, version: str) -> Variant:
        """Bring back an earlier version of the current variant (from the log or the file)."""
        for v, _, templates in self.versions():
            if v == version:
                base = self.prompt.variant(self.variant.name)
                self.variant = edit_variant(base, {"system": templates.get("system", ""),
                                                   "user": templates.get("user", "")})
                return self.variant
        raise ParameterError(f"no version {version!r} of variant {self.variant.name!r} in the log or the file")

    def set_params(self, **params: Any) -> None:
        """Override call parameters (temperature, max_tokens, ...); None removes an override."""
        for k, v in params.items():
            if looks_like_secret(k, v):
                raise ParameterError(f"parameter {k!r} looks like a secret; keys come from the environment only")
            if v is None:
                self.params.pop(k, None)
            else:
                self.params[k] = v

    def typed_input(self, text: str) -> InputRow:
        """An input row from typed text: the text fills the template's only variable, or, when the
        template has several, it is read as ``name: value`` lines (YAML)."""
        names = sorted(self.variant.variables)
        if len(names) <= 1:
            values = {names[0]: text} if names else {}
        else:
            import yaml

            try:
                values = yaml.safe_load(text) or {}
            except yaml.YAMLError as exc:
                raise ParameterError(f"typed input: the template needs {names}; write 'name: value' lines ({exc})")
            if not isinstance(values, dict):
                raise ParameterError(f"typed input: the template needs {names}; write 'name: value' lines")
        digest = hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:8]
        return InputRow(id=f"typed-{digest}", vars=values, tags=("typed",))

    # ---- calls -------------------------------------------------------------------------------

    @property
    def samples(self) -> list[RunRecord]:
        """The samples of the latest turn (Run plus each Retry)."""
        return self.turns[-1].samples if self.turns else []

    def run(self, row: InputRow | dict[str, Any] | str) -> RunRecord:
        """One call in a new conversation. ``row``: an input row, a dict of variables, or typed text."""
        if isinstance(row, str):
            row = self.typed_input(row)
        elif isinstance(row, dict):
            row = InputRow(id=str(row.get("id") or "typed-" + new_id()[:8]),
                           vars={k: v for k, v in row.items() if k != "id"}, tags=("typed",))
        missing = sorted(self.variant.variables - set(row.vars))
        if missing:
            raise ParameterError(f"input {row.id!r} lacks {missing}, used by variant {self.variant.name!r}")
        self.row = row
        self.conversation_id = new_id()
        messages = self.variant.render(row.vars, input_id=row.id)
        self.turns = [Turn(messages)]
        return self._sample(self.turns[-1], turn=0, parent=None, role="answer")

    def compare(self, row: InputRow | dict[str, Any] | str, variants: list[str] | None = None) -> list[RunRecord]:
        """One call per variant (default: all of the prompt file's) on the same input, each in a new
        conversation: the samples for a side-by-side or blind comparison. Retry samples each again."""
        names = variants or list(self.prompt.variants)
        keep = self.variant
        records = []
        turn = Turn([], kind="compare")
        try:
            for name in names:
                self.variant = self.prompt.variant(name) if name != keep.name else keep
                rec = self.run(row)
                records.append(rec)
                turn.samples.append(rec)
        finally:
            self.variant = keep
        turn.messages = records[0].messages if records else []
        self.turns = [turn]
        return records

    def retry(self) -> RunRecord | list[RunRecord]:
        """Another independent sample of the latest call: same messages, a fresh seed. After
        :meth:`compare`, one more sample of each variant (a list)."""
        if not self.turns:
            raise ParameterError("nothing to retry yet: Run first")
        turn = self.turns[-1]
        if turn.kind == "input set":
            raise ParameterError("Retry draws another sample of one call; after an input set, pick an input and Run")
        if turn.kind == "compare":
            return self._retry_compare(turn)
        parent = turn.samples[0].parent_id if turn.samples else None
        return self._sample(turn, turn=len(self.turns) - 1, parent=parent, role=turn.samples[0].role
                            if turn.samples else "answer")

    def _retry_compare(self, turn: Turn) -> list[RunRecord]:
        keep = self.variant
        names = list(dict.fromkeys(r.variant for r in turn.samples))
        out = []
        try:
            for name in names:
                self.variant = self.prompt.variant(name) if name != keep.name else keep
                first = next(r for r in turn.samples if r.variant == name)
                single = Turn(first.messages, [r for r in turn.samples if r.variant == name])
                self.conversation_id = new_id()
                rec = self._sample(single, turn=0, parent=None, role="answer")
                turn.samples.append(rec)
                out.append(rec)
        finally:
            self.variant = keep
        return out

    def run_set(self, rows: list[InputRow], on_done: Callable[[str], None] | None = None) -> list[RunRecord]:
        """The current variant on every row, one sample each in its own conversation, through the
        :class:`~lab.runner.Runner` (concurrent calls, each logged as it finishes). Returns the records
        in the order of ``rows``; ``on_done(outcome)`` is called as each call finishes. The latest
        turn then holds these samples (one per input), so :meth:`retry` is not offered for it."""
        rows = list(rows)
        if not rows:
            raise ParameterError("the input set is empty: nothing to run")
        for row in rows:
            missing = sorted(self.variant.variables - set(row.vars))
            if missing:
                raise ParameterError(f"input {row.id!r} lacks {missing}, used by variant {self.variant.name!r}")
        self._register()
        self._record_version(self.variant)
        runner = Runner(self.log, self.experiment_id, provider_options=self.provider_options)
        provider = runner.provider(self.model)
        params = {**DEFAULT_PARAMS, **self.variant.params, **self.params}
        user_seed = params.pop("seed", None)
        provider.check_params(params)
        calls = []
        for row in rows:
            p = dict(params)
            if user_seed is not None or provider.honours_seed:
                p["seed"] = (derive_seed(user_seed, row.id, 0) if isinstance(user_seed, int)
                             else random.SystemRandom().randrange(2**31 - 1))
            calls.append(Call(model=self.model, messages=self.variant.render(row.vars, input_id=row.id), params=p,
                              seed=p.get("seed"), seed_chosen_by_user=user_seed is not None, variant=self.variant,
                              row=row, escape_hatch=self.variant.escape_hatch, conversation_id=new_id()))
        progress = _Callback(len(calls), f"{self.experiment_id} input set", on_done)

        async def run_all() -> list[RunRecord]:
            self._loop = asyncio.get_running_loop()
            self._task = asyncio.current_task()
            try:
                return await runner.run_all(calls, progress)
            finally:
                self._task = None
                await runner.aclose()

        try:
            records = run_sync(run_all)
        except asyncio.CancelledError:
            raise CallCancelled("cancelled: the input set was stopped; the calls that finished are logged") from None
        order = {c.run_id: i for i, c in enumerate(calls)}
        records.sort(key=lambda r: order.get(r.id, len(order)))
        self.row = rows[-1]
        self.turns = [Turn([], records, kind="input set")]
        return records

    def follow_up(self, text: str, sample: int = -1) -> RunRecord:
        """The next user turn in the same conversation, continuing from a sample of the latest turn."""
        if not self.turns or not self.samples:
            raise ParameterError("no conversation yet: Run first")
        if not text.strip():
            raise ParameterError("the follow-up is empty")
        prev = self.samples[sample]
        messages = list(prev.messages) + [{"role": "assistant", "content": prev.output or ""},
                                          {"role": "user", "content": text}]
        self.turns.append(Turn(messages, kind="follow-up"))
        return self._sample(self.turns[-1], turn=len(self.turns) - 1, parent=prev.id, role="answer")

    def critique(self, rounds: int = 1, on_round: Callable[[RunRecord, RunRecord | None], None] | None = None,
                 sample: int = -1, *, rubric: str = DEFAULT_RUBRIC,
                 stop_phrase: str = STOP_PHRASE) -> list[tuple[RunRecord, RunRecord | None]]:
        """Self-critique, as :func:`lab.self_critique` does it: each round the model reviews its latest
        answer against ``rubric`` in a fresh context, then revises in the answer's conversation; it
        stops early when the review says ``stop_phrase`` (or fails). Returns ``(critique, revision)``
        pairs, the revision ``None`` for a round that stopped; ``on_round`` is called as each round finishes."""
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
            raise ParameterError(f"rounds must be an integer >= 1, got {rounds!r}")
        if not self.samples:
            raise ParameterError("nothing to critique yet: Run first")
        if not isinstance(rubric, str) or not rubric.strip():
            raise ParameterError("rubric must say what a good answer does")
        answer = self.samples[sample]
        base = list(self.turns[-1].messages)
        stop = EscapeHatch(text=stop_phrase, match="word")
        out = []
        for r in range(1, rounds + 1):
            self.turns.append(Turn(critique_messages(base[-1]["content"], answer.output or "", rubric, stop_phrase),
                                   kind="critique"))
            crit = self._sample(self.turns[-1], turn=0, parent=answer.id, role="critique", round=r)
            if crit.outcome == "error" or stop.detect(crit.output):
                out.append((crit, None))
                if on_round is not None:
                    on_round(crit, None)
                break
            self.turns.append(Turn(revision_messages(base, answer.output or "", crit.output or "", rubric),
                                   kind="revision"))
            answer = self._sample(self.turns[-1], turn=0, parent=crit.id, role="revision", round=r)
            out.append((crit, answer))
            if on_round is not None:
                on_round(crit, answer)
            if answer.outcome == "error":
                break
        return out

    def reset(self) -> None:
        """Forget the conversation: the next call sees only the system prompt and the current prompt."""
        self.turns = []
        self.conversation_id = new_id()

    def rate(self, run_id: str, score: float, note: str = "", *, rater: str = "me", blind: bool = False) -> str:
        """Store a human rating (score 1-5 and a note) of one output as a grade row
        (:func:`lab.grading.rate`, grader ``human:<rater>``); returns its id. ``blind`` is kept in the note."""
        from ..grading import rate

        if isinstance(score, bool) or not isinstance(score, (int, float)) or not 1 <= score <= 5:
            raise ParameterError(f"score must be a number from 1 to 5, got {score!r}")
        text = (note or "").strip()
        if blind:
            text = (text + " " if text else "") + "[rated blind]"
        return rate(run_id, rater=rater, score=float(score), note=text or None, log=self.log)

    def cancel(self) -> bool:
        """Stop the call in flight (from another thread). True if there was one."""
        loop, task = self._loop, self._task
        if loop is None or task is None or task.done():
            return False
        loop.call_soon_threadsafe(task.cancel)
        return True

    # ---- internals ---------------------------------------------------------------------------

    def _record_version(self, v: Variant) -> None:
        self.log.add_prompt_version(v.version, prompt_path=v.path, task=v.task, variant=v.name,
                                    templates=v.templates, params=v.params,
                                    escape_hatch=v.escape_hatch.text if v.escape_hatch else None)

    def _register(self) -> None:
        if self._registered:
            return
        self.log.add_experiment(self.experiment_id, name="workbench", prompt_path=self.prompt.path,
                                inputs_path=None, models=[self.model], variants=[self.variant.name], repeats=1,
                                params={"params": self.params, "source": "workbench"})
        self._registered = True

    def _sample(self, t: Turn, *, turn: int, parent: str | None, role: str, round: int = 0) -> RunRecord:
        self._register()
        self._record_version(self.variant)
        runner = Runner(self.log, self.experiment_id, provider_options=self.provider_options)
        provider = runner.provider(self.model)
        params = {**DEFAULT_PARAMS, **self.variant.params, **self.params}
        user_seed = params.pop("seed", None)
        # a retry is a fresh sample: a new seed each time (derived from the user's seed when there is one)
        seed = user_seed + len(t.samples) if isinstance(user_seed, int) else random.SystemRandom().randrange(2**31 - 1)
        if user_seed is not None or provider.honours_seed:
            params["seed"] = seed
        provider.check_params(params)
        call = Call(model=self.model, messages=list(t.messages), params=params, repeat=len(t.samples),
                    seed=params.get("seed"), seed_chosen_by_user=user_seed is not None, variant=self.variant,
                    row=getattr(self, "row", None), escape_hatch=self.variant.escape_hatch,
                    conversation_id=self.conversation_id, turn=turn, attempt=len(t.samples), round=round,
                    parent_id=parent, role=role)
        try:
            rec = run_sync(lambda: self._call(runner, call))
        except asyncio.CancelledError:
            raise CallCancelled("cancelled: the call was stopped before it finished; nothing was logged") from None
        t.samples.append(rec)
        return rec

    async def _call(self, runner: Runner, call: Call) -> RunRecord:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        try:
            return await runner.call(call)
        finally:
            self._task = None
            await runner.aclose()


def input_set_table(records: list[RunRecord], prompt: PromptFile, log: RunLog) -> pd.DataFrame:
    """One row per call of an input set run: input, output, expected, outcome, grade.

    The grade comes from the prompt file's ``grader:``, or without one from the default grader
    (normalized match against the input's ``expected`` answer), written to the log as grade rows;
    blank when there is nothing to check an answer by.
    """

    from .. import plots
    from ..grading import grade, grader_from_spec, graders_or_default

    df = pd.DataFrame([dataclasses.asdict(r) for r in records])
    grades = None
    named = [grader_from_spec(prompt.grader, f"{prompt.path}: grader")] if prompt.grader is not None else []
    graders = graders_or_default(named, df) if len(df) else []
    if graders:
        grade(df, graders, log=log)
        grades = log.grades(experiment=records[0].experiment_id)
    cats = plots.outcome_categories(df, grades) if len(df) else pd.Series(dtype=str)
    words = {"answered-correct": "correct", "answered-wrong": "wrong"}
    return pd.DataFrame({
        "input": df.get("input_id", pd.Series(dtype=str)),
        "output": [r.output if r.outcome != "error" else r.error for r in records],
        "expected": ["" if e is None else str(e) for e in df.get("expected", [])],
        "outcome": df.get("outcome", pd.Series(dtype=str)),
        "grade": [words.get(c, "") for c in cats],
    })


class _Callback(Progress):
    """A silent progress that reports each finished call's outcome to a function (the widget's bar)."""

    def __init__(self, total: int, desc: str, on_done: Callable[[str], None] | None):
        super().__init__(total, desc, "off")
        self._on_done = on_done

    def update(self, outcome: str) -> None:
        super().update(outcome)
        if self._on_done is not None:
            self._on_done(outcome)


class CallCancelled(LabError):
    """The user cancelled a call before it finished."""

