"""Held-out inputs: an input set split once into ``dev`` (where you iterate) and ``held_out``
(where a choice is confirmed), recorded in the run log so every machine and later run sees the
same split.

    s = lab.split_inputs("prompts/sentiment_inputs.yaml", held_out=10, seed=0)
    s.dev, s.held_out                      # input ids
    lab.experiment(prompt, inputs)         # runs on the dev part now, and says so
    lab.experiment(prompt, inputs, split="held_out")   # explicit
    lab.confirm(prompt, inputs, candidate="honest", baseline="persona")

The split is a pure function of the seed, the row ids and their tags (rows are ordered by a hash
of ``seed:id`` within each tag group, so it is stratified and does not depend on the machine),
and the log keeps it as the input set's ``split`` event: a split, once made, is never redrawn.
Choosing between prompt versions spends inputs (Dwork et al. 2015, adaptive reuse of a holdout):
:func:`search` says what was tried on a set of inputs, :func:`uses` how often held-out inputs
have been used to confirm a choice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from .errors import ParameterError
from .inputs import InputSet, load_inputs, rows_from_records
from .store import RunLog

if TYPE_CHECKING:  # pandas (through stats and findings) is loaded when a table is read, not to run calls
    import pandas as pd

    from .findings import Findings
    from .stats import Plan

Part = Literal["dev", "held_out", "all"]
PARTS = ("dev", "held_out", "all")


def input_set_key(name: str) -> str:
    """The log's key for an input set's events (its split, each confirmation)."""
    return f"inputs:{name}"


@dataclass(frozen=True)
class Split:
    """An input set's split: which row ids are ``dev`` and which ``held_out``."""

    input_set: str
    seed: int
    dev: tuple[str, ...]
    held_out: tuple[str, ...]
    created_at: str | None = None

    def part(self, inputs: InputSet, which: Part) -> InputSet:
        """The rows of ``inputs`` in part ``which``. A row added to the set after the split is in
        neither list; it goes to ``dev`` (it was never held out)."""
        if which == "all":
            return inputs
        held = set(self.held_out)
        rows = tuple(r for r in inputs if (r.id in held) == (which == "held_out"))
        if not rows:
            raise ParameterError(f"input set {self.input_set!r}: its {which} part has no rows in {inputs.path}")
        return InputSet(inputs.path, rows, inputs.name)

    def describe(self, which: Part, inputs: InputSet) -> str:
        n = len(self.part(inputs, which))
        other = "held_out" if which == "dev" else "dev"
        return (f"using the {which} part of input set {self.input_set!r} ({n} of {len(inputs)} inputs; "
                f"split seed {self.seed}); split={other!r} or split='all' runs elsewhere explicitly")


def _order(seed: int, row_id: str) -> str:
    return hashlib.sha256(f"{seed}:{row_id}".encode()).hexdigest()


def draw(inputs: InputSet, held_out: int, seed: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(dev ids, held-out ids): ``held_out`` rows, spread over the tag groups in proportion
    (largest remainder), each group's rows ordered by a hash of ``seed:id``."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for r in inputs:
        groups.setdefault(tuple(sorted(r.tags)), []).append(r.id)
    n = len(inputs)
    quotas = {g: held_out * len(ids) / n for g, ids in groups.items()}
    take = {g: int(q) for g, q in quotas.items()}
    for g in sorted(quotas, key=lambda g: (-(quotas[g] - take[g]), g))[: held_out - sum(take.values())]:
        take[g] += 1
    chosen = {i for g, ids in groups.items() for i in sorted(ids, key=lambda i: _order(seed, i))[: take[g]]}
    return (tuple(r.id for r in inputs if r.id not in chosen), tuple(r.id for r in inputs if r.id in chosen))


def suggested_size(n: int) -> int:
    """Half the set, so that both parts can reach a verdict when the set allows it."""
    return max(1, min(n - 1, n // 2))


def as_inputs(inputs: str | Path | InputSet | list[dict]) -> InputSet:
    if isinstance(inputs, InputSet):
        return inputs
    if isinstance(inputs, list):
        return rows_from_records(inputs)
    return load_inputs(inputs)


def _planned_size(plan: Plan, n: int) -> int:
    from .stats import MIN_INPUTS

    wanted = int(plan.recommended.inputs)
    spare = max(1, n - MIN_INPUTS) if n > MIN_INPUTS else max(1, n - 1)
    if wanted > spare:
        print(f"the plan asks for {wanted} held-out inputs (to detect {plan.difference:+.2f} with power "
              f"{plan.power:.0%} at {plan.recommended.repeats} repeats); this set spares {spare}: add inputs")
    return min(wanted, spare)


def _open(log: RunLog | str | Path | None) -> RunLog:
    return log if isinstance(log, RunLog) else RunLog(log)


def find_split(inputs: InputSet | str, log: RunLog) -> Split | None:
    """The split the log holds for this input set (by name), or None."""
    name = inputs if isinstance(inputs, str) else inputs.name
    found = log.event_details(input_set_key(name), "split")
    if not found:
        return None
    at, d = found[0]
    return Split(name, int(d["seed"]), tuple(d["dev"]), tuple(d["held_out"]), at)


def split_inputs(inputs: str | Path | InputSet | list[dict], *, held_out: int | float | Plan | None = None,
                 seed: int | None = None, log: RunLog | str | Path | None = None) -> Split:
    """Split ``inputs`` into ``dev`` and ``held_out`` once and record it in the log.

    ``held_out``: a number of rows, a fraction of the set, or a :class:`lab.stats.Plan` (from
    ``lab.stats.plan(pilot, a, b, difference=...)``: its recommended number of inputs, as many as
    the set can spare while leaving a dev part); default: half. Stratified by tag.
    ``seed`` (default 0) fixes the draw.
    Asking again returns the recorded split; asking for a different size or seed than the one
    recorded raises, since redrawing would let held-out inputs leak into the iteration."""
    rows = as_inputs(inputs)
    run_log = _open(log)
    n = len(rows)
    if n < 2:
        raise ParameterError(f"input set {rows.name!r} has {n} row; a split needs at least 2")
    if not rows.name or rows.name.startswith("<"):
        raise ParameterError("the split is kept under the input set's name, and this one has none: split a file, "
                             "or an InputSet with a name")
    if hasattr(held_out, "recommended"):  # a lab.stats.Plan: the inputs it needs for its power
        held_out = _planned_size(cast("Plan", held_out), n)
    if held_out is None:
        size = suggested_size(n)
    elif isinstance(held_out, float) and 0 < held_out < 1:
        size = max(1, min(n - 1, round(held_out * n)))
    elif isinstance(held_out, int) and not isinstance(held_out, bool) and 0 < held_out < n:
        size = held_out
    else:
        raise ParameterError(f"held_out must be a number of rows between 1 and {n - 1} or a fraction in (0, 1), "
                             f"got {held_out!r}")
    existing = find_split(rows, run_log)
    if existing is not None:
        if (held_out is not None and len(existing.held_out) != size) or seed not in (None, existing.seed):
            raise ParameterError(
                f"input set {rows.name!r} was split on {existing.created_at} (seed {existing.seed}, "
                f"{len(existing.held_out)} held out); a split is never redrawn. Call split_inputs without "
                "held_out/seed to read it, or name the input set differently for a new one")
        return existing
    from .stats import MIN_INPUTS

    seed = seed or 0
    dev, held = draw(rows, size, seed)
    run_log.add_event(input_set_key(rows.name), "split", input_set=rows.name, path=rows.path, seed=seed,
                      dev=list(dev), held_out=list(held))
    if min(len(dev), len(held)) < MIN_INPUTS:
        print(f"input set {rows.name!r}: {len(dev)} dev and {len(held)} held-out inputs; a verdict needs "
              f"{MIN_INPUTS} inputs on each side")
    return find_split(rows, run_log) or Split(rows.name, seed, dev, held)


def choose_part(inputs: InputSet, log: RunLog, split: Part | None) -> tuple[InputSet, str | None, str | None]:
    """The rows an experiment runs on: (rows, part, what to tell the user).

    ``split=None``: the dev part when the input set has a split, else every row. ``"held_out"``
    and ``"all"`` are explicit acts."""
    if split is not None and split not in PARTS:
        raise ParameterError(f"split must be one of {PARTS}, got {split!r}")
    s = find_split(inputs, log) if inputs.name and not inputs.name.startswith("<") else None
    if s is None:
        if split in ("dev", "held_out"):
            raise ParameterError(f"input set {inputs.name!r} has no split in {log.path}; make one with "
                                 "lab.split_inputs(inputs, held_out=...)")
        return inputs, None, None
    which = split or "dev"
    return s.part(inputs, which), which, s.describe(which, inputs)


def search(log: RunLog, task: str, inputs: InputSet | Iterable[str], *, until: str | None = None) -> pd.DataFrame:
    """What was tried on these inputs (an input set, its ``split.part(...)``, or row ids): per
    variant and prompt version of ``task``, the inputs it ran on, its calls and when (first and
    last call), oldest first."""
    ids = [r.id for r in inputs] if isinstance(inputs, InputSet) else [str(i) for i in inputs]
    return log.versions_tried(task, ids, until=until)


def record_use(log: RunLog, split: Split, **detail: Any) -> int:
    """Record one use of the held-out part for a choice; returns how many uses there are now."""
    log.add_event(input_set_key(split.input_set), "confirm", input_set=split.input_set, **detail)
    return len(uses(log, split.input_set))


def uses(log: RunLog, input_set: str) -> pd.DataFrame:
    """Every use of an input set's held-out part for a choice (one row per confirmation), oldest first."""
    ev = log.events(input_set_key(input_set))
    return ev[ev["kind"] == "confirm"].reset_index(drop=True) if len(ev) else ev


def with_selection(f: Findings, log: RunLog, experiment_id: str) -> Findings:
    """``f`` (an experiment's findings) with the selection clause when its inputs were used to
    choose between versions of the compared variants (see :mod:`lab.selection`). Reads the log's
    rows as plain tuples (no pandas): ``python -m lab run`` prints it."""
    from .findings import answers_in_log
    from .selection import annotate_table, search_of

    if not f.a or not f.b:
        return f
    rows = log.run_rows(experiment_id, ["task", "input_id", "finished_at"])
    tasks = [r[0] for r in rows if r[0] is not None]
    if not tasks:
        return f
    ids = [str(i) for i in dict.fromkeys(r[1] for r in rows if r[1] is not None)]
    tried = log.versions_tried_rows(tasks[0], ids, until=str(max(r[2] for r in rows)))

    def answers() -> Any:  # the first answers only (a self-critique's revisions are not the comparison)
        t, _, _, _ = answers_in_log(log, experiment_id, f.grader, roles=["answer"])
        return t
    return annotate_table(f, answers, search_of(tried, [f.a, f.b], len(ids)))
