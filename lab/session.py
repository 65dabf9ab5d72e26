"""The workbench's session, without widgets: a prompt variant, a model, and the conversations it asks.

Everything the workbench does is a method here, usable from plain Python (importing it loads no
ipywidgets or plotly):

    s = lab.session.Session("prompts/sentiment.yaml", variant="honest", model="local:smollm2")
    s.run({"text": "Great kettle"})   # one call, a new conversation
    s.reroll()                        # another sample of the same call (a new attempt, its own seed)
    s.follow_up("Why?")               # a next turn in the same conversation
    s.critique(rounds=2)              # critique and revision rounds on the latest answer
    s.reset()                         # a clean context for the next call
    s.rate(run_id, 4, note="terse")   # a human rating, stored as a grade row

The calls are made by :class:`lab.techniques.Conversation` (turns, attempts, seeds, context) and
the critique rounds by the self-critique technique's own round function, so a conversation is
numbered, seeded and logged the same way here as in the Python API. Every call is one row in the
run log under the session's experiment id (``workbench-...``). A template edited in place
becomes a new prompt version, recorded in the log with its templates, so any earlier version can
be brought back (:meth:`Session.versions`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .checks import check_int
from .config import DEFAULT_MODEL
from .errors import CallCancelled, LabError, ParameterError, PromptFileError
from .experiments import Experiment, record_prompt_version
from .graders import graders_or_default
from .grades import grade, rate
from .grid import GradeBadge, badge
from .inputs import InputRow, InputSet, load_inputs
from .names import experiment_id as new_experiment_id
from .progress import Progress
from .prompts import PromptFile, Variant, check_template, load_prompt, version_of
from .runner import Runner, run_sync
from .secrets import looks_like_secret
from .store import RunLog, RunRecord, new_id
from .techniques._common import resolve_graders
from .techniques.conversation import Conversation
from .techniques.critique import DEFAULT_RUBRIC, STOP_PHRASE, critique_round


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
    for role, src in new:  # the same checks (syntax, sandbox) as a prompt file's templates
        needed |= check_template(src, f"{variant.path}: variant {variant.name!r} {role} template")
    return dataclasses.replace(variant, templates=new, version=version_of(new, variant.params, variant.escape_hatch),
                               variables=frozenset(needed))


@dataclass
class Turn:
    """One step as the workbench shows it: the samples drawn for the same context (a reroll adds one)."""

    messages: list[dict[str, str]]
    samples: list[RunRecord] = field(default_factory=list)
    kind: str = "answer"  # answer | follow-up | critique | revision | compare | input set




class Session:
    """Single calls, rerolls, follow-ups and critique rounds on one prompt variant, all logged.

    Each :meth:`run` starts a :class:`~lab.techniques.Conversation` from the variant rendered for
    an input; ``turns`` is what the workbench shows of it. Methods block until the call is logged
    (use them from a worker thread in a UI); :meth:`cancel` from another thread stops the call in
    flight (its row is not written).
    """

    def __init__(self, prompt: str | Path | PromptFile, variant: str | None = None, *, model: str = DEFAULT_MODEL,
                 params: dict[str, Any] | None = None, log: RunLog | str | Path | None = None,
                 experiment_id: str | None = None, provider_options: dict[str, dict[str, Any]] | None = None):
        self.log = log if isinstance(log, RunLog) else RunLog(log)
        self.experiment_id = experiment_id or new_experiment_id("workbench")
        self.model = model
        self.params = dict(params or {})
        self.provider_options = provider_options or {}
        self.turns: list[Turn] = []
        self.conversation: Conversation | None = None
        self._conversation_of: dict[str, Conversation] = {}  # run id -> the conversation that made it
        self._busy: Conversation | None = None
        self._set_task: tuple[asyncio.AbstractEventLoop, asyncio.Task | None] | None = None
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
        record_prompt_version(self.log, self.variant)
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
        """Override call parameters (temperature, max_tokens, seed, ...); None removes an override."""
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
                raise ParameterError(f"typed input: the template needs {names}; write 'name: value' lines ({exc})") from exc
            if not isinstance(values, dict):
                raise ParameterError(f"typed input: the template needs {names}; write 'name: value' lines")
        digest = hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:8]
        return InputRow(id=f"typed-{digest}", vars=values, tags=("typed",))

    # ---- calls -------------------------------------------------------------------------------

    @property
    def samples(self) -> list[RunRecord]:
        """The samples of the latest turn (Run plus each reroll)."""
        return self.turns[-1].samples if self.turns else []

    @property
    def conversation_id(self) -> str | None:
        """The id of the conversation the next follow-up continues (None before the first Run)."""
        return self.conversation.id if self.conversation is not None else None

    def _row(self, row: InputRow | dict[str, Any] | str) -> InputRow:
        if isinstance(row, str):
            row = self.typed_input(row)
        elif isinstance(row, dict):
            row = InputRow(id=str(row.get("id") or "typed-" + new_id()[-8:]),
                           vars={k: v for k, v in row.items() if k != "id"}, tags=("typed",))
        missing = sorted(self.variant.variables - set(row.vars))
        if missing:
            raise ParameterError(f"input {row.id!r} lacks {missing}, used by variant {self.variant.name!r}")
        return row

    def _new_conversation(self) -> Conversation:
        params = {**self.variant.params, **self.params}
        seed = params.pop("seed", None)
        return Conversation(model=self.model, params=params, seed=seed, log=self.log, experiment=self.experiment_id,
                            name="workbench", variant=self.variant, provider_options=self.provider_options)

    def _in(self, conv: Conversation, make: Callable[[], RunRecord]) -> RunRecord:
        self._busy = conv
        try:
            rec = make()
        finally:
            self._busy = None
        self._conversation_of[rec.id] = conv
        return rec

    def run(self, row: InputRow | dict[str, Any] | str) -> RunRecord:
        """One call in a new conversation. ``row``: an input row, a dict of variables, or typed text."""
        row = self._row(row)
        self.row = row
        conv = self.conversation = self._new_conversation()
        messages = self.variant.render(row.vars, input_id=row.id)
        self.turns = [Turn(messages)]
        rec = self._in(conv, lambda: conv.start(messages, row))
        self.turns[-1].samples.append(rec)
        return rec

    def compare(self, row: InputRow | dict[str, Any] | str, variants: list[str] | None = None) -> list[RunRecord]:
        """One call per variant (default: all of the prompt file's) on the same input, each in a new
        conversation: the samples for a side-by-side or blind comparison. A reroll samples each again."""
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

    def reroll(self) -> RunRecord | list[RunRecord]:
        """Another sample of the latest call: same messages, the next attempt, its own seed
        (:meth:`Conversation.reroll <lab.techniques.Conversation.reroll>`). After :meth:`compare`,
        one more sample of each variant (a list)."""
        if not self.turns:
            raise ParameterError("nothing to reroll yet: Run first")
        turn = self.turns[-1]
        if turn.kind == "input set":
            raise ParameterError("Retry draws another sample of one call; after an input set, pick an input and Run")
        if turn.kind == "compare":
            out = []
            for name in dict.fromkeys(r.variant for r in turn.samples):
                first = next(r for r in turn.samples if r.variant == name)
                conv = self._conversation_of[first.id]
                rec = self._in(conv, lambda: conv.again(first))
                turn.samples.append(rec)
                out.append(rec)
            return out
        latest = turn.samples[-1]
        conv = self._conversation_of[latest.id]
        rec = self._in(conv, lambda: conv.again(latest))
        turn.samples.append(rec)
        return rec

    def run_set(self, rows: list[InputRow], on_done: Callable[[str], None] | None = None) -> list[RunRecord]:
        """The current variant on every row, one sample each in its own conversation, as an
        experiment through the :class:`~lab.runner.Runner` (its seeds, concurrency and logging).
        Returns the records in the order of ``rows``; ``on_done(outcome)`` is called as each call
        finishes. The latest turn then holds these samples (one per input), so :meth:`reroll` is
        not offered for it."""
        rows = list(rows)
        if not rows:
            raise ParameterError("the input set is empty: nothing to run")
        for row in rows:
            self._row(row)
        params = {**self.params}
        seed = params.pop("seed", None)
        prompt = dataclasses.replace(self.prompt, variants={self.variant.name: self.variant})
        exp = Experiment(prompt, InputSet(path="<workbench>", rows=tuple(rows)), model=self.model, params=params,
                         seed=seed, log=self.log, id=self.experiment_id, name="workbench",
                         provider_options=self.provider_options, progress="off")
        calls = exp.plan()
        progress = _Callback(len(calls), f"{self.experiment_id} input set", on_done)

        async def run_all() -> list[RunRecord]:
            self._set_task = (asyncio.get_running_loop(), asyncio.current_task())
            exp.register()
            runner = Runner(self.log, self.experiment_id, provider_options=self.provider_options)
            try:
                return await runner.run_all(calls, progress)
            finally:
                self._set_task = None
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
        """The next user turn in the same conversation, continuing from a sample of the latest turn
        (an answer, a reroll, a revision)."""
        if not self.turns or not self.samples:
            raise ParameterError("no conversation yet: Run first")
        if not text.strip():
            raise ParameterError("the follow-up is empty")
        prev = self.samples[sample]
        conv = self.conversation = self._conversation_of[prev.id]
        history = conv.history
        if prev.id not in {r.id for r in history}:
            on_branch = [r for r in history if r.role == "answer" and r.turn == prev.turn and r.parent_id == prev.parent_id]
            if prev.role == "answer" and on_branch:
                conv.choose(prev.attempt, prev.turn)
            else:  # a revision or a critique: the conversation continues from it
                conv.adopt(prev)
        self.turns.append(Turn([], kind="follow-up"))
        rec = self._in(conv, lambda: conv.ask(text))
        self.turns[-1].messages = rec.messages
        self.turns[-1].samples.append(rec)
        return rec

    def critique(self, rounds: int = 1, on_round: Callable[[RunRecord, RunRecord | None], None] | None = None,
                 sample: int = -1, *, rubric: str = DEFAULT_RUBRIC,
                 stop_phrase: str = STOP_PHRASE) -> list[tuple[RunRecord, RunRecord | None]]:
        """Self-critique, round by round with :func:`lab.techniques.critique.critique_round` (what
        :func:`lab.self_critique` does): each round the model reviews its latest answer against
        ``rubric`` in a fresh context, then revises in the answer's conversation; it stops early
        when the review says ``stop_phrase`` (or fails). Returns ``(critique, revision)`` pairs, the
        revision ``None`` for a round that stopped; ``on_round`` is called as each round finishes."""
        rounds = check_int("rounds", rounds, 1)
        if not self.samples:
            raise ParameterError("nothing to critique yet: Run first")
        if not isinstance(rubric, str) or not rubric.strip():
            raise ParameterError("rubric must say what a good answer does")
        answer = self.samples[sample]
        conv = self._conversation_of[answer.id]
        asked = conv.call_of(answer)
        out: list[tuple[RunRecord, RunRecord | None]] = []
        for r in range(1, rounds + 1):
            self.turns.append(Turn([], kind="critique"))
            done = self._in_step(conv, lambda runner: critique_round(runner, asked, answer, r, rubric=rubric,
                                                                     stop_phrase=stop_phrase))
            self.turns[-1].messages = done.critique.messages
            self.turns[-1].samples.append(done.critique)
            self._conversation_of[done.critique.id] = conv
            conv.remember(done.critique_call, done.critique)
            if done.revision is None:
                out.append((done.critique, None))
                if on_round is not None:
                    on_round(done.critique, None)
                break
            self.turns.append(Turn(done.revision.messages, [done.revision], kind="revision"))
            self._conversation_of[done.revision.id] = conv
            conv.remember(done.revision_call, done.revision)
            answer, asked = done.revision, done.revision_call
            out.append((done.critique, answer))
            if on_round is not None:
                on_round(done.critique, answer)
            if answer.outcome == "error":
                break
        return out

    def _in_step(self, conv: Conversation, step: Callable[[Runner], Any]) -> Any:
        self._busy = conv
        try:
            return conv.step(step)
        finally:
            self._busy = None

    def reset(self) -> None:
        """Forget the conversation: the next call sees only the system prompt and the current prompt."""
        self.turns = []
        self.conversation = None

    def rate(self, run_id: str, score: float, note: str = "", *, rater: str = "me", blind: bool = False) -> str:
        """Store a human rating (score 1-5 and a note) of one output as a grade row
        (:func:`lab.rate`, grader ``human:<rater>``); returns its id. ``blind`` is kept in the note."""
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not 1 <= score <= 5:
            raise ParameterError(f"score must be a number from 1 to 5, got {score!r}")
        text = (note or "").strip()
        if blind:
            text = (text + " " if text else "") + "[rated blind]"
        return rate(run_id, rater=rater, score=float(score), note=text or None, log=self.log)

    @property
    def _task(self) -> asyncio.Task | None:
        """The call in flight, if any (the conversation's, or an input set's)."""
        if self._set_task is not None:
            return self._set_task[1]
        return self._busy._task if self._busy is not None else None

    def cancel(self) -> bool:
        """Stop the call in flight (from another thread). True if there was one."""
        if self._set_task is not None:
            loop, task = self._set_task
            if task is None or task.done():
                return False
            loop.call_soon_threadsafe(task.cancel)
            return True
        return self._busy.cancel() if self._busy is not None else False


class _Callback(Progress):
    """A silent progress that reports each finished call's outcome to a function (the widget's bar)."""

    def __init__(self, total: int, desc: str, on_done: Callable[[str], None] | None):
        super().__init__(total, desc, "off")
        self._on_done = on_done

    def update(self, outcome: str) -> None:
        super().update(outcome)
        if self._on_done is not None:
            self._on_done(outcome)


# the input-set table the workbench shows: grades written to the log, one row per call
def _is_missing(v: object) -> bool:
    return v is None or (isinstance(v, float) and v != v)


def grade_records(records: list[RunRecord], prompt: PromptFile, log: RunLog) -> dict[str, GradeBadge]:
    """Grade the records not graded yet with the prompt file's ``grader:`` (or, without one, the
    default grader where inputs have ``expected`` answers), write those grades to the log, and
    return a badge per run id."""
    if not records:
        return {}
    df = pd.DataFrame([dataclasses.asdict(r) for r in records])
    df = df[df["outcome"] != "error"]
    graders = graders_or_default(resolve_graders(None, prompt), df) if len(df) else []
    experiments = set(df["experiment_id"]) if len(df) else set()
    grades = pd.concat([log.grades(experiment=e) for e in experiments], ignore_index=True) if experiments else None
    if graders and len(df):
        done = set(grades["run_id"]) if grades is not None and len(grades) else set()
        todo = df[~df["id"].isin(done)]
        if len(todo):
            grade(todo, graders, log=log)
            grades = pd.concat([log.grades(experiment=e) for e in experiments], ignore_index=True)
    return {r.id: badge(r, grades) for r in records}


def input_text(rec: RunRecord) -> str:
    """The input as its text (typed input included), not its id."""
    vars_ = rec.input_vars or {}
    if len(vars_) == 1:
        return str(next(iter(vars_.values())))
    return "; ".join(f"{k}: {v}" for k, v in vars_.items()) or str(rec.input_id or "")


def input_set_table(records: list[RunRecord], prompt: PromptFile, log: RunLog) -> pd.DataFrame:
    """One row per call of an input set run: input, output, expected, outcome, grade and why.

    The grade comes from the prompt file's ``grader:``, or without one from the default grader
    (normalized match against the input's ``expected`` answer), written to the log as grade rows;
    escapes are read against the input's tags (right on ``unanswerable``, over-abstention elsewhere).
    """
    badges = grade_records(records, prompt, log)
    return pd.DataFrame({
        "input": [r.input_id for r in records],
        "output": [r.output if r.outcome != "error" else r.error for r in records],
        "expected": ["" if _is_missing(r.expected) else str(r.expected) for r in records],
        "outcome": [r.outcome for r in records],
        "grade": [badges[r.id].text for r in records],
        "why": [badges[r.id].why for r in records],
    })
