"""Conversations: context carried from turn to turn, retries of a turn, reset to a clean context.

Every call is one logged run with the conversation's id, its ``turn`` (0, 1, ...), its
``attempt`` (0 for the first try of a turn at that point of the tree, 1 for the first reroll,
...) and ``parent_id`` (the answer of the previous turn it continues from). Rerolling a turn
makes the new attempt the current branch; the abandoned attempts, and any turns that followed
them, stay in the log as branches of the tree.

This is the one model of a conversation in the lab: :class:`lab.session.Session` (what the
workbench shows) keeps its turns in a :class:`Conversation`, so numbering, seeds, context and
logging are the same whichever way a conversation is driven.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from ..checks import check_int
from ..config import DEFAULT_MODEL, DEFAULT_PARAMS
from ..errors import CallCancelled, ConversationError, ParameterError
from ..experiments import record_prompt_version
from ..graders import Grader, check_grader_list, match
from ..grades import grade
from ..inputs import InputRow
from ..names import experiment_id
from ..prompts import Variant
from ..providers import get_provider
from ..runner import Call, Runner, run_sync
from ..seeds import base_seed, seeded
from ..stats import paired_difference, rates
from ..store import RunLog, RunRecord, new_id
from ..tables import side_by_side, with_grades
from ..text import normalize
from ._common import adhoc_variant, open_log

T = TypeVar("T")


class Conversation:
    """A chat with one model whose context grows turn by turn; every call is logged.

        conv = lab.conversation(system="You are terse.", seed=7)
        conv.ask("What is the capital of Australia?")
        conv.reroll()                # the same turn again, attempt 1; it becomes the current branch
        conv.ask("And its population?")
        fresh = conv.reset()         # a new conversation: system prompt only, no earlier turns
        conv.tree()                  # every turn and attempt, abandoned branches included
    """

    def __init__(self, *, model: str = DEFAULT_MODEL, system: str | None = None, params: dict[str, Any] | None = None,
                 seed: int | None = None, log: RunLog | str | Path | None = None, experiment: str | None = None,
                 label: str = "conversation", name: str = "conversation", variant: Variant | None = None,
                 provider_options: dict[str, dict[str, Any]] | None = None):
        self.model = model
        self.system = system
        self.params = {**DEFAULT_PARAMS, **(params or {})}
        self.params.pop("seed", None)
        self.provider_options = provider_options or {}
        get_provider(model, **self.provider_options.get(model, {})).check_params({**self.params, "seed": 0})
        self.seed = base_seed(seed)
        self.log = open_log(log)
        self.experiment_id = experiment or experiment_id(name)
        self.name = name
        self.id = new_id()
        # a prompt file's variant when the first turn is rendered from one (the workbench), else ad hoc
        self.variant = variant if variant is not None else adhoc_variant(label, name, system, self.params)
        self._path: list[RunRecord] = []  # the current branch: one chosen answer per turn
        self._all: list[RunRecord] = []
        self._calls: dict[str, Call] = {}  # run id -> the call that made it
        self._registered = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None

    def __repr__(self) -> str:
        return f"Conversation({self.id[-8:]}, {len(self._path)} turn(s) on {self.model}, experiment {self.experiment_id!r})"

    def _register(self) -> None:
        if not self._registered:
            from_file = not self.variant.path.startswith("<")
            self.log.add_experiment(self.experiment_id, name=self.name, prompt_path=self.variant.path if from_file else None,
                                    inputs_path=None, models=[self.model], variants=[self.variant.name], repeats=1,
                                    params={"system": self.system, "params": self.params, "seed": self.seed})
            if from_file:
                record_prompt_version(self.log, self.variant)
            self._registered = True

    def messages(self, upto_turn: int | None = None) -> list[dict[str, str]]:
        """The context a new turn would be sent after: the messages of the latest turn on the
        branch (up to ``upto_turn``, exclusive) and its chosen answer; before any turn, the system text."""
        path = self._path if upto_turn is None else self._path[:upto_turn]
        for rec in path:
            if rec.outcome == "error":
                raise ConversationError(
                    f"conversation {self.id[-8:]}: turn {rec.turn} ended in an error ({rec.error}); reroll it first"
                )
        if not path:
            return [{"role": "system", "content": self.system}] if self.system else []
        return [*path[-1].messages, {"role": "assistant", "content": path[-1].output or ""}]

    def _call(self, messages: list[dict[str, str]], turn: int, row: InputRow, *,
              seed_parts: tuple[object, ...] | None = None, repeat: int | None = None) -> Call:
        parent = self._path[turn - 1].id if turn > 0 else None
        attempt = sum(1 for r in self._all if r.turn == turn and r.parent_id == parent)
        params, s = seeded(self.params, self.seed, *(seed_parts or (turn, attempt)))
        return Call(model=self.model, messages=messages, params=params, repeat=attempt if repeat is None else repeat,
                    seed=s, seed_chosen_by_user=True, variant=self.variant, row=row,
                    escape_hatch=self.variant.escape_hatch, conversation_id=self.id, turn=turn, attempt=attempt,
                    parent_id=parent, role="answer")

    def _call_for(self, text: str, turn: int, *, seed_parts: tuple[object, ...] | None = None,
                  input_id: str | None = None, expected: Any = None, repeat: int | None = None) -> Call:
        if not isinstance(text, str):
            raise ParameterError(f"ask: text must be a string, got {type(text).__name__}")
        messages = self.messages(turn) + [{"role": "user", "content": text}]
        row = InputRow(id=input_id or f"turn-{turn}", vars={"text": text}, expected=expected)
        return self._call(messages, turn, row, seed_parts=seed_parts, repeat=repeat)

    def _take(self, rec: RunRecord, turn: int) -> RunRecord:
        self._all.append(rec)
        del self._path[turn:]
        self._path.append(rec)
        return rec

    async def _acall(self, call: Call, runner: Runner | None, *, take: bool = True) -> RunRecord:
        if runner is not None:
            self._register()
            rec = await runner.call(call)
        else:
            rec = await self._astep(lambda own: own.call(call))
        self._calls[rec.id] = call
        return self._take(rec, call.turn) if take else rec

    async def _astep(self, step: Callable[[Runner], Awaitable[T]]) -> T:
        self._register()
        self._loop, self._task = asyncio.get_running_loop(), asyncio.current_task()
        runner = Runner(self.log, self.experiment_id, provider_options=self.provider_options)
        try:
            return await step(runner)
        finally:
            self._task = None
            await runner.aclose()

    def _sync(self, call: Call, *, take: bool = True) -> RunRecord:
        return self.step(lambda runner: self._acall(call, runner, take=take))

    def step(self, step: Callable[[Runner], Awaitable[T]]) -> T:
        """Run ``step(runner)``, whose calls go through ``runner``, as part of this conversation:
        logged in its experiment, with its provider options, cancellable by :meth:`cancel`."""
        try:
            return run_sync(lambda: self._astep(step))
        except asyncio.CancelledError:
            raise CallCancelled("cancelled: the call was stopped before it finished; nothing was logged") from None

    def remember(self, call: Call, rec: RunRecord) -> None:
        """Note that ``call`` made ``rec`` (a call made through :meth:`step`), so it can be sampled :meth:`again`."""
        self._calls[rec.id] = call

    def again(self, rec: RunRecord) -> RunRecord:
        """Another sample of the call that made ``rec`` (same messages, parent, role and round): the
        next attempt at that place, with its own seed. An answer on the branch is :meth:`reroll`-ed instead."""
        if rec.id in {r.id for r in self._path}:
            return self.reroll(self._path.index(next(r for r in self._path if r.id == rec.id)))
        call = self._calls[rec.id]
        place = (call.turn, call.parent_id, call.role, call.round)
        attempt = 1 + max(c.attempt for c in self._calls.values() if (c.turn, c.parent_id, c.role, c.round) == place)
        params, s = seeded({k: v for k, v in call.params.items() if k != "seed"}, self.seed, call.role, call.round,
                           call.turn, attempt)
        new = dataclasses.replace(call, params=params, seed=s, seed_chosen_by_user=True, attempt=attempt,
                                  repeat=attempt, run_id=new_id())
        return self._sync(new, take=False)

    def adopt(self, rec: RunRecord, turn: int | None = None) -> RunRecord:
        """Continue from ``rec``, a sample of this conversation off the branch (a revision after a
        critique): it becomes the answer of ``turn`` (default: the last), and the next turn follows it."""
        turn = max(len(self._path) - 1, 0) if turn is None else turn
        return self._take(rec, turn)

    def cancel(self) -> bool:
        """Stop the call in flight (from another thread); it is not logged. True if there was one."""
        loop, task = self._loop, self._task
        if loop is None or task is None or task.done():
            return False
        loop.call_soon_threadsafe(task.cancel)
        return True

    def call_of(self, rec: RunRecord) -> Call:
        """The call that made ``rec`` (one of this conversation's runs): its messages, parameters and seed."""
        return self._calls[rec.id]

    def start(self, messages: list[dict[str, str]], row: InputRow) -> RunRecord:
        """Ask the first turn with ``messages`` as they are (a prompt file's variant rendered for
        ``row``: system text, examples, the user's message). Later turns continue with :meth:`ask`."""
        if self._path:
            raise ConversationError(f"start: conversation {self.id[-8:]} has begun; reset() for a new one")
        return self._sync(self._call(list(messages), 0, row))

    async def aask(self, text: str, *, runner: Runner | None = None, **kw: Any) -> RunRecord:
        """Async :meth:`ask` (for code already on an event loop)."""
        return await self._acall(self._call_for(text, len(self._path), **kw), runner)

    def ask(self, text: str) -> RunRecord:
        """Ask the next turn with the whole current branch as context. Returns the logged run."""
        return self._sync(self._call_for(text, len(self._path)))

    def reroll(self, turn: int | None = None) -> RunRecord:
        """Ask turn ``turn`` (default: the last) again in the same context, as a new attempt.
        The new answer becomes the current branch; later turns of the old branch are abandoned
        (they stay in the log)."""
        if not self._path:
            raise ConversationError("reroll: nothing asked yet; use ask(text) first")
        turn = len(self._path) - 1 if turn is None else turn
        if isinstance(turn, bool) or not isinstance(turn, int) or not 0 <= turn < len(self._path):
            raise ParameterError(f"reroll: turn must be between 0 and {len(self._path) - 1}, got {turn!r}")
        asked = self._calls.get(self._path[turn].id)
        row = asked.row if asked is not None and asked.row is not None else InputRow(
            id=f"turn-{turn}", vars={"text": self._path[turn].messages[-1]["content"]})
        return self._sync(self._call(list(self._path[turn].messages), turn, row))

    def choose(self, attempt: int, turn: int | None = None) -> RunRecord:
        """Continue from another attempt of ``turn`` (default: the last turn) with the same parent."""
        turn = len(self._path) - 1 if turn is None else turn
        if not 0 <= turn < len(self._path):
            raise ParameterError(f"choose: turn must be between 0 and {len(self._path) - 1}, got {turn!r}")
        parent = self._path[turn].parent_id
        for rec in self._all:
            if rec.turn == turn and rec.parent_id == parent and rec.attempt == attempt:
                return self._take(rec, turn)
        raise ParameterError(f"choose: turn {turn} has no attempt {attempt} on the current branch")

    def reset(self) -> Conversation:
        """A new conversation in the same experiment: same model, system text, parameters and seed,
        and a clean context (no earlier turns)."""
        new = Conversation(model=self.model, system=self.system, params=self.params, seed=self.seed, log=self.log,
                           experiment=self.experiment_id, label=self.variant.name, name=self.name,
                           variant=self.variant, provider_options=self.provider_options)
        new._registered = self._registered
        return new

    @property
    def history(self) -> list[RunRecord]:
        """The current branch: one answer per turn."""
        return list(self._path)

    def tree(self) -> pd.DataFrame:
        """Every call of this conversation from the log, including abandoned branches; ``current``
        marks the runs on the current branch."""
        df = self.log.runs(experiment=self.experiment_id)
        df = df[df["conversation_id"] == self.id].copy()
        on_path = {r.id for r in self._path}
        df["question"] = df["messages"].map(lambda m: m[-1]["content"] if m else None)
        df["current"] = df["id"].isin(on_path)
        return df[["id", "turn", "attempt", "parent_id", "question", "output", "outcome", "current", "seed",
                   "output_tokens", "cost_usd"]].reset_index(drop=True)


def conversation(*, model: str = DEFAULT_MODEL, system: str | None = None, params: dict[str, Any] | None = None,
                 seed: int | None = None, log: RunLog | str | Path | None = None,
                 experiment: str | None = None) -> Conversation:
    """Start a logged conversation (see :class:`Conversation`). Parameters are checked now."""
    return Conversation(model=model, system=system, params=params, seed=seed, log=log, experiment=experiment)


@dataclass
class ContextEffect:
    """The same final question asked in a fresh context and after earlier turns, ``n`` times each.

    Rows are paired by sample (``repeat``) and share the final call's seed, so a difference is the
    context's doing, not the dice's.
    """

    experiment_id: str
    log: RunLog
    grader: str | None

    @property
    def finals(self) -> pd.DataFrame:
        """The final answers (variant ``fresh`` or ``after_turns``), with grades when graded."""
        df = self.log.runs(experiment=self.experiment_id)
        return with_grades(df[df["input_id"] == "final"], self.log.grades(self.experiment_id), grader=self.grader)

    def side_by_side(self) -> pd.DataFrame:
        df = self.log.runs(experiment=self.experiment_id)
        return side_by_side(df[df["input_id"] == "final"], self.log.grades(self.experiment_id), grader=self.grader,
                            index=("repeat",))

    @property
    def agreement(self) -> float:
        """Share of samples where the fresh and after-turns answers are the same (normalized text)."""
        f = self.finals
        wide = f.assign(a=f["output"].map(normalize)).pivot_table(index="repeat", columns="variant", values="a",
                                                                   aggfunc="first")
        if not {"fresh", "after_turns"} <= set(wide.columns) or wide.empty:
            return float("nan")
        return float((wide["fresh"] == wide["after_turns"]).mean())

    def summary(self) -> pd.DataFrame:
        """Per condition: samples, distinct answers, escape/answer counts and (when graded) the pass rate."""
        f = self.finals
        out = f.groupby("variant").agg(samples=("id", "size"),
                                       distinct=("output", lambda s: s.map(normalize).nunique()))
        if f["passed"].notna().any():
            out = out.join(rates(f, value="passed")[["rate", "low", "high"]].add_prefix("pass_"))
        return out

    def difference(self, value: str = "passed") -> pd.DataFrame:
        """Paired difference fresh - after_turns over the samples, with a verdict."""
        return paired_difference(self.finals, "fresh", "after_turns", value=value, pair_on=("repeat", "model"))


def context_effect(question: str, earlier: list[str], *, n: int = 5, model: str = DEFAULT_MODEL,
                   system: str | None = None, params: dict[str, Any] | None = None, seed: int | None = None,
                   expected: Any = None, grader: Grader | list[Grader] | None = None,
                   log: RunLog | str | Path | None = None, id: str | None = None) -> ContextEffect:
    """Ask ``question`` ``n`` times in a fresh conversation and ``n`` times after the ``earlier``
    turns (each answered by the model in that same conversation): the "gravity" a long context
    builds. Final answers are graded by ``grader`` (default: normalized match with ``expected``
    anywhere in the answer, when ``expected`` is given).

    In the log: variant ``fresh`` / ``after_turns``, input id ``final`` for the compared question
    (``earlier-<k>`` for the others), ``repeat`` = sample number, conversation id, turn, parent.
    """
    check_int("n", n, 1)
    if not isinstance(question, str) or not question.strip():
        raise ParameterError("context_effect: question must be a non-empty string")
    if not isinstance(earlier, (list, tuple)) or not earlier or not all(isinstance(t, str) for t in earlier):
        raise ParameterError("context_effect: earlier must be a non-empty list of strings (the turns before)")
    graders = check_grader_list(grader) or ([match(mode="normalized", location="anywhere")] if expected is not None else [])
    seed = base_seed(seed)
    log = open_log(log)
    exp = id or experiment_id("context-effect")
    convs: list[tuple[Conversation, Conversation]] = []
    for _ in range(n):
        fresh = Conversation(model=model, system=system, params=params, seed=seed, log=log, experiment=exp,
                             label="fresh", name="context-effect")
        carried = Conversation(model=model, system=system, params=params, seed=seed, log=log, experiment=exp,
                               label="after_turns", name="context-effect")
        convs.append((fresh, carried))

    async def go() -> None:
        runner = Runner(log, exp)
        try:
            async def sample(i: int, fresh: Conversation, carried: Conversation) -> None:
                for k, text in enumerate(earlier):
                    await carried.aask(text, runner=runner, seed_parts=(i, "earlier", k), input_id=f"earlier-{k}",
                                       repeat=i)
                for conv in (fresh, carried):
                    await conv.aask(question, runner=runner, seed_parts=(i, "final"), input_id="final",
                                    expected=expected, repeat=i)

            await asyncio.gather(*[sample(i, f, c) for i, (f, c) in enumerate(convs)])
        finally:
            await runner.aclose()

    log.add_experiment(exp, name="context-effect", prompt_path=None, inputs_path=None, models=[model],
                       variants=["fresh", "after_turns"], repeats=n,
                       params={"question": question, "earlier": list(earlier), "system": system, "params": params,
                               "seed": seed})
    for pair in convs:
        for conv in pair:
            conv._registered = True
    run_sync(go)
    if graders:
        finals = log.runs(experiment=exp)
        grade(finals[finals["input_id"] == "final"], graders, log=log)
    return ContextEffect(exp, log, graders[-1].name if graders else None)
