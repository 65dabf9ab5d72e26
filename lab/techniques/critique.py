"""Self-critique: answer, critique the answer against a rubric, revise; up to K rounds, or until
the critique finds nothing to fix. Every round is logged, linked and graded.

In the log, for each (input, repeat) chain (one conversation id):
  round 0: role ``answer``
  round r: role ``critique`` (parent = the answer it critiques), then role ``revision``
           (parent = that critique); the revision is the round's answer.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Unpack

import pandas as pd

from ..checks import check_int
from ..config import RunConfig, RunOptions
from ..errors import BudgetExceeded, ParameterError
from ..experiments import Experiment
from ..findings import Findings, findings
from ..graders import Grader
from ..grades import grade
from ..inputs import InputSet
from ..judges import judge
from ..names import html_text
from ..prompts import EscapeHatch, PromptFile
from ..providers import get_provider
from ..runner import Call, Runner, run_sync
from ..seeds import derive_seed
from ..stats import rates
from ..store import RunLog, RunRecord
from ..tables import critique_rounds, side_by_side
from ..text import fill
from ._common import as_prompt, resolve_graders

CRITIQUE_TEMPLATE = """I am reviewing a draft answer against a rubric before using it.

The request:
<<<
{request}
>>>

The draft answer:
<<<
{answer}
>>>

Rubric:
{rubric}

List, briefly, what in the draft does not meet the rubric. If nothing needs fixing, reply with exactly: {stop}"""

REVISE_TEMPLATE = """Here is a review of your answer against this rubric:
{rubric}

Review:
{critique}

Rewrite your answer so that it meets the rubric. Reply with the revised answer only."""


DEFAULT_RUBRIC = "It does what the request asks, it is correct, and it says no more than it needs to."
STOP_PHRASE = "NO CHANGES"


def critique_messages(request: str, answer: str, rubric: str, stop_phrase: str = STOP_PHRASE) -> list[dict[str, str]]:
    """The critic's context: one user message asking it to review ``answer`` to ``request`` against
    ``rubric``, replying ``stop_phrase`` when nothing needs fixing."""
    text = fill(CRITIQUE_TEMPLATE, request=request, answer=answer, rubric=rubric, stop=stop_phrase)
    return [{"role": "user", "content": text}]


def revision_messages(messages: list[dict[str, str]], answer: str, critique: str, rubric: str) -> list[dict[str, str]]:
    """The answer's own conversation (``messages``, then ``answer``) continued with the critique and a
    request to revise."""
    return [*messages, {"role": "assistant", "content": answer},
            {"role": "user", "content": fill(REVISE_TEMPLATE, rubric=rubric, critique=critique)}]


@dataclass
class Round:
    """What one critique round did. ``stopped``: None when the answer was revised, else why the
    chain ends here (``nothing to fix``, ``error``, ``budget``)."""

    critique: RunRecord | None
    revision: RunRecord | None
    stopped: str | None
    critique_call: Call | None = None
    revision_call: Call | None = None


async def critique_round(runner: Runner, asked: Call, answer: RunRecord, rnd: int, *, rubric: str,
                         stop_phrase: str = STOP_PHRASE, critic: str | None = None,
                         critique_params: dict[str, Any] | None = None) -> Round:
    """One self-critique round on ``answer``, which the call ``asked`` made (or an earlier round revised).

    The critic (``critic``, default the answer's model, with ``critique_params``, default the
    answer's parameters) reviews the answer against ``rubric`` in a fresh context; unless the
    review says ``stop_phrase`` as a word (or fails), the model revises in the answer's own
    conversation. Both calls are logged: role ``critique`` (parent: the answer) and ``revision``
    (parent: the critique), round ``rnd``. :func:`self_critique` and the workbench both use this.
    """
    request = asked.messages[-1]["content"]
    cp = dict(critique_params if critique_params is not None else asked.params)
    if "seed" in asked.params or asked.seed_chosen_by_user:
        cp["seed"] = derive_seed(asked.params.get("seed", 0), "critique", rnd)
    crit_call = Call(model=critic or asked.model, messages=critique_messages(request, answer.output or "", rubric, stop_phrase),
                     params=cp, repeat=asked.repeat, seed=cp.get("seed"), seed_chosen_by_user=asked.seed_chosen_by_user,
                     variant=asked.variant, row=asked.row, conversation_id=answer.conversation_id or asked.conversation_id,
                     round=rnd, parent_id=answer.id, role="critique")
    try:
        crit = await runner.call(crit_call)
    except BudgetExceeded:
        return Round(None, None, "budget")
    if crit.outcome == "error":
        return Round(crit, None, "error", crit_call)
    if EscapeHatch(text=stop_phrase, match="word").detect(crit.output):
        return Round(crit, None, "nothing to fix", crit_call)
    rp = dict(asked.params)
    if "seed" in rp:
        rp["seed"] = derive_seed(rp["seed"], "revision", rnd)
    messages = revision_messages(asked.messages, answer.output or "", crit.output or "", rubric)
    rev_call = Call(model=asked.model, messages=messages, params=rp, repeat=asked.repeat, seed=rp.get("seed"),
                    seed_chosen_by_user=asked.seed_chosen_by_user, variant=asked.variant, row=asked.row,
                    escape_hatch=asked.escape_hatch, conversation_id=crit_call.conversation_id, round=rnd,
                    parent_id=crit.id, role="revision")
    try:
        rev = await runner.call(rev_call)
    except BudgetExceeded:
        return Round(crit, None, "budget", crit_call)
    return Round(crit, rev, "error" if rev.outcome == "error" else None, crit_call, rev_call)


@dataclass
class _Chain:
    call: Call
    answer: RunRecord
    stopped: str | None = None
    rounds_done: int = 0


@dataclass
class Critique:
    """What :func:`self_critique` did. Views read the log, so later grades show up."""

    experiment_id: str
    log: RunLog
    grader: str | None
    chains: pd.DataFrame

    @property
    def runs(self) -> pd.DataFrame:
        return self.log.runs(experiment=self.experiment_id)

    @property
    def rounds(self) -> pd.DataFrame:
        """One row per (input, repeat, round): the answer, its grade, the critique that led to it, cost."""
        return critique_rounds(self.runs, self.log.grades(self.experiment_id), grader=self.grader)

    def by_round(self) -> pd.DataFrame:
        """Per variant and round: answers, pass rate with an interval over inputs (repeats of one
        input are one piece of evidence), mean score, how many revisions helped / hurt / changed
        nothing against the previous round's grade, and cost."""
        r = self.rounds
        prev = r.set_index(["variant", "input_id", "repeat", "round"])
        intervals = rates(r, value="passed", by=["variant", "round"]) if len(r) else None
        rows = []
        for (variant, rnd), g in r.groupby(["variant", "round"], sort=True):
            graded = g["passed"].dropna()
            low, high = ((math.nan, math.nan) if intervals is None or not len(graded)
                         else intervals.loc[(variant, rnd), ["low", "high"]])
            helped = hurt = same = 0
            if rnd > 0:
                for _, x in g.iterrows():
                    key = (variant, x["input_id"], x["repeat"], rnd - 1)
                    if key not in prev.index:
                        continue
                    before, after = prev.loc[key, "score"], x["score"]
                    if isinstance(before, pd.Series):
                        before = before.iloc[0]
                    if pd.isna(before) or pd.isna(after):
                        continue
                    helped += after > before
                    hurt += after < before
                    same += after == before
            rows.append({"variant": variant, "round": rnd, "answers": len(g), "graded": len(graded),
                         "pass_rate": float(graded.mean()) if len(graded) else math.nan, "pass_low": low,
                         "pass_high": high, "mean_score": float(g["score"].mean()) if g["score"].notna().any() else math.nan,
                         "helped": helped, "hurt": hurt, "unchanged": same,
                         "output_tokens": g["output_tokens"].sum(min_count=1), "cost_usd": g["cost_usd"].sum(min_count=1)})
        return pd.DataFrame(rows).set_index(["variant", "round"])

    def side_by_side(self) -> pd.DataFrame:
        """Each chain's answers across rounds, next to each other (one column group per round)."""
        return side_by_side(self.runs, self.log.grades(self.experiment_id), grader=self.grader, columns="round",
                            index=("variant", "input_id", "repeat"))

    def findings(self, **kwargs: Any) -> Findings:
        """The findings block for the first answers (per framing rates with intervals over inputs,
        the verdict between the first two variants, caveats); :meth:`by_round` reads the rounds."""
        return findings(self.runs, self.log.grades(self.experiment_id), grader=self.grader,
                        experiment_id=self.experiment_id, **kwargs)

    def _repr_html_(self) -> str:
        return (self.findings()._repr_html_() + f"<p><b>{html_text(self.experiment_id)}</b>: self-critique</p>"
                + self.by_round().to_html())


def self_critique(prompt: str | Path | PromptFile, inputs: str | Path | InputSet | list[dict] | None = None, *,
                  rubric: str, rounds: int = 2, variants: list[str] | None = None,
                  grader: Grader | list[Grader] | None = None, critic_model: str | None = None,
                  critique_params: dict[str, Any] | None = None, stop_phrase: str = STOP_PHRASE,
                  log: RunLog | str | Path | None = None, id: str | None = None, config: RunConfig | None = None,
                  **run: Unpack[RunOptions]) -> Critique:
    """Generate, critique against ``rubric``, revise: up to ``rounds`` rounds per (input, repeat),
    stopping a chain early when its critique says ``stop_phrase`` (as a word, any case).

    The critique is asked by ``critic_model`` (default: the same model) with ``critique_params``
    (default: the answer's parameters); the revision is asked in the answer's own conversation
    (its messages, the answer, then the critique). Every round's answer is graded by ``grader``
    (default: the prompt file's ``grader:``, else ``lab.judge(rubric, repeats=1)`` on the critic
    model). A budget stops further rounds, not the rounds already made.
    """
    if not isinstance(rubric, str) or not rubric.strip():
        raise ParameterError("self_critique: rubric must be a non-empty string saying what a good answer does")
    check_int("rounds", rounds, 0)
    if not isinstance(stop_phrase, str) or not stop_phrase.strip():
        raise ParameterError("self_critique: stop_phrase must be a non-empty string")
    cfg = RunConfig.of(config, **run)
    budget_usd = cfg.budget_usd
    pf = as_prompt(prompt)
    critic = critic_model or cfg.models[0]
    graders = resolve_graders(grader, pf) or [judge(rubric, model=critic, repeats=1)]
    exp = Experiment(pf, inputs, variants=variants, log=log, id=id, name=f"{pf.task}-critique", config=cfg)
    calls = {c.run_id: c for c in exp.plan()}
    cparams_base = dict(critique_params) if critique_params is not None else None
    if cparams_base is not None:
        get_provider(critic).check_params(cparams_base)
    first = exp.run()
    chains = [_Chain(calls[r.id], r) for r in first.records]
    for ch in chains:
        if ch.answer.outcome == "error":
            ch.stopped = "error"
    remaining = None if budget_usd is None else max(0.0, budget_usd - first.spent_usd)

    async def go() -> None:
        runner = Runner(exp.log, exp.id, concurrency=cfg.concurrency, budget_usd=remaining)
        try:
            for rnd in range(1, rounds + 1):
                active = [c for c in chains if c.stopped is None]
                if not active:
                    break
                await asyncio.gather(*[_round(runner, c, rnd) for c in active])
        finally:
            await runner.aclose()

    async def _round(runner: Runner, ch: _Chain, rnd: int) -> None:
        r = await critique_round(runner, ch.call, ch.answer, rnd, rubric=rubric, stop_phrase=stop_phrase,
                                 critic=critic, critique_params=cparams_base)
        if r.revision is not None:
            ch.rounds_done = rnd
        if r.stopped is not None:
            ch.stopped = r.stopped
        elif r.revision is not None:
            ch.answer = r.revision

    run_sync(go)
    for ch in chains:
        if ch.stopped is None:
            ch.stopped = "max rounds"
    exp.log.add_event(exp.id, "critique_finished", rounds=rounds,
                      stopped={s: sum(c.stopped == s for c in chains) for s in {c.stopped for c in chains}})
    grade(exp.log.runs(experiment=exp.id), graders, log=exp.log)
    table = pd.DataFrame([{"conversation_id": c.answer.conversation_id,
                           "variant": c.call.variant.name if c.call.variant else None,
                           "input_id": c.call.row.id if c.call.row else None, "repeat": c.call.repeat,
                           "rounds_done": c.rounds_done, "stopped": c.stopped, "final_run_id": c.answer.id}
                          for c in chains])
    return Critique(exp.id, exp.log, graders[-1].name, table)
