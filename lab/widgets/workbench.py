"""The workbench: one prompt, one input, try it, re-roll it, talk to it, let it critique itself.

``lab.workbench()`` in a notebook cell shows it. Every button calls a :class:`Session` method
in a worker thread (widget callbacks run on the kernel's main thread, which must stay free);
the thread updates widget values and appends to output areas as calls finish. Model outputs are
always shown as escaped text, never as live HTML.
"""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ipywidgets as W

from ..config import DEFAULT_MODEL, DEFAULT_PARAMS
from ..errors import CallCancelled, LabError
from ..grid import OUTCOME_KINDS, GradeBadge, records_frame, results_grid
from ..holdout import choose_part
from ..inputs import InputSet, load_inputs
from ..names import html_text
from ..secrets import redact
from ..session import Session, find_input_sets, find_prompt_files, grade_records, input_set_table, input_text
from ..stats import plural
from ..store import RunLog, RunRecord
from ..techniques.confirm import confirm
from ..techniques.critique import DEFAULT_RUBRIC
from ..text import normalize

TYPED = "(typed input)"
OUTCOME_STYLE = {"answered": ("#1f77b4", "answered"), "escaped": ("#ff7f0e", "ESCAPED (took the way out)"),
                 "error": ("#d62728", "ERROR")}


def _pre(text: object, style: str = "") -> str:
    # words wrap whole ("correct", never "correc/t"); only a word wider than the card is broken
    return (f'<pre style="white-space:pre-wrap;word-break:normal;overflow-wrap:break-word;margin:0;font-size:12px;'
            f'{style}">{html_text(text)}</pre>')


# a described control shows its whole description (the default width cuts "temperature" to "temperat...")
WIDE = {"description_width": "initial"}
CARD_WIDTH = "262px"  # three cards a row at 1280 px with the file browser open, five at 1920 px
UNRATED = ""  # the rating control's placeholder value


class SampleCard(W.VBox):
    """One output with its outcome, its grade and why, what produced it (prompt file, variant and
    version, input text, tokens, latency) and a rating control (score 1-5, a note). A card of a
    blind round shows none of what would tell its variant (nor its grade) until the round is revealed."""

    def __init__(self, rec: RunRecord, label: str, on_rate: Callable[[SampleCard], None], *,
                 blind: bool = False, grade: GradeBadge | None = None):
        self.record = rec
        self.label = label
        self.blind = blind  # a card of a blind comparison: nothing tells its variant until the reveal
        self.revealed = False
        self.grade = grade
        self.html = W.HTML(self._render())
        self.score = W.Dropdown(options=[("score 1-5", UNRATED), ("1", 1), ("2", 2), ("3", 3), ("4", 4), ("5", 5)],
                                value=UNRATED, description="rating", style=WIDE, layout=W.Layout(width="130px"),
                                tooltip="your score for this output, 1 (bad) to 5 (good)")
        self.note = W.Text(placeholder="note", layout=W.Layout(width="64px"))
        self.rate_button = W.Button(description="Rate", layout=W.Layout(width="50px"))
        self.rated = W.HTML("")
        self.rate_button.on_click(lambda _: on_rate(self))
        super().__init__([self.html, W.HBox([self.score, self.note, self.rate_button]), self.rated],
                         layout=W.Layout(width=CARD_WIDTH, margin="0 6px 6px 0"))
        self.add_class("promptlab-card")

    @property
    def hidden(self) -> bool:
        return self.blind and not self.revealed

    def show(self, *, grade: GradeBadge | None = None, revealed: bool | None = None) -> None:
        """Redraw with a (new) grade, or revealed after a blind round."""
        if grade is not None:
            self.grade = grade
        if revealed is not None:
            self.revealed = revealed
        self.html.value = self._render()

    def _render(self) -> str:
        rec = self.record
        color, badge = OUTCOME_STYLE.get(rec.outcome, ("#444", rec.outcome))
        body = rec.error if rec.outcome == "error" else rec.output
        text = input_text(rec)
        said = (f"typed input \u201c{_clip(text)}\u201d" if str(rec.input_id or "").startswith("typed-")
                else f"input {rec.input_id} \u00b7 \u201c{_clip(text)}\u201d")
        lines = [f'<div class="promptlab-card-input" title="{html_text(text)}">{html_text(said)}</div>']
        label = self.label
        if not self.hidden:
            if self.blind:
                label += f" = {rec.variant}"
            file = Path(rec.prompt_path).name if rec.prompt_path else "prompt"
            where = f"{file} \u00b7 {rec.variant} \u00b7 version {rec.prompt_version}"
            cost = f"{plural(rec.output_tokens or 0, 'token')}, {rec.latency_ms or 0:.0f}\u00a0ms"
            lines.append(f"<div>{html_text(where)}</div><div>{html_text(cost)}</div>")
        grade = ""
        if self.grade is not None and not self.hidden:
            g = self.grade
            grade = (f'<div class="promptlab-grade" data-kind="{html_text(g.kind)}" style="margin:2px 0">'
                     f'<span style="background:{OUTCOME_KINDS.get(g.kind, ("#ccc",))[0]};color:#fff;border-radius:3px;'
                     f'padding:0 5px;font-weight:600">{html_text(g.text)}</span>'
                     + (' <span style="color:#d62728">stopped at max tokens</span>' if g.truncated else "")
                     + f'<div class="promptlab-why" style="color:#555;font-size:11px">{html_text(g.why)}</div></div>')
        elif rec.finish_reason == "length" and not self.hidden:  # no grade (a critique round): still say it
            grade = '<div class="promptlab-truncated" style="color:#d62728">stopped at max tokens</div>'
        return (f'<div class="promptlab-sample" data-outcome="{html_text(rec.outcome)}" '
                f'style="border:2px solid {color};border-radius:4px;padding:4px;overflow-wrap:break-word;'
                f'word-break:normal;line-height:1.35">'
                f'<b class="promptlab-card-label">{html_text(label)}</b> <span style="color:{color}">{html_text(badge)}</span>'
                f'{grade}<div style="color:#777;font-size:12px">{"".join(lines)}</div>{_pre(body)}</div>')


def _clip(text: str, n: int = 70) -> str:
    t = " ".join(text.split())
    return t if len(t) <= n else t[: n - 1] + "\u2026"


class GroupHeading(W.HTML):
    """A heading across the card history where a new group starts (another prompt file, a restored session)."""

    record = None
    blind = False
    hidden = False

    def __init__(self, text: str):
        super().__init__(f"<div class='promptlab-group' style='font-weight:600;margin:6px 0 2px 0;color:#333'>"
                         f"{html_text(text)}</div>", layout=W.Layout(width="100%"))


class ErrorCard(W.VBox):
    """A call that failed before it could be logged (unknown model, bad parameter, ...): the message
    takes its place in the history, and the earlier cards stay."""

    record = None
    blind = False

    def __init__(self, label: str, message: str):
        self.label = label
        color, badge = OUTCOME_STYLE["error"]
        self.html = W.HTML(
            f'<div class="promptlab-sample" data-outcome="error" '
            f'style="border:2px solid {color};border-radius:4px;padding:4px">'
            f'<b class="promptlab-card-label">{html_text(label)}</b> <span style="color:{color}">{html_text(badge)}</span>'
            f'{_pre(message)}</div>'
        )
        super().__init__([self.html], layout=W.Layout(width=CARD_WIDTH, margin="0 6px 6px 0"))
        self.add_class("promptlab-card")


class Workbench(W.VBox):
    """Prompt file, variant and template; model and parameters; input; Run, Retry, Reset, follow-up,
    self-critique; samples side by side with their frequencies; ratings. All calls are logged.

    Drive it from Python as a user would (set ``.value``, call ``.click()``), then ``wait()``.
    """

    def __init__(self, prompt: str | Path | None = None, inputs: str | Path | None = None, *,
                 variant: str | None = None, model: str = DEFAULT_MODEL, params: dict[str, Any] | None = None,
                 log: RunLog | str | Path | None = None, prompts_dir: str | Path = "prompts",
                 provider_options: dict[str, dict[str, Any]] | None = None, experiment_id: str | None = None):
        files = [str(p) for p in find_prompt_files(prompts_dir)] if Path(prompts_dir).is_dir() else []
        if prompt is not None and str(prompt) not in files:
            files.insert(0, str(prompt))
        if not files:
            raise LabError(f"no prompt files under {prompts_dir}/; give one: lab.workbench('prompts/x.yaml')")
        sets = [str(p) for p in find_input_sets(prompts_dir)] if Path(prompts_dir).is_dir() else []
        if inputs is not None and str(inputs) not in sets:
            sets.insert(0, str(inputs))
        p = dict(DEFAULT_PARAMS)
        p.update(params or {})
        self.session = Session(prompt or files[0], variant, model=model, params=params, log=log,
                               provider_options=provider_options, experiment_id=experiment_id)
        # re-running the cell in the same kernel continues the same workbench session (cards from the log)
        key = (str(Path(str(prompt or files[0])).resolve()), str(Path(self.session.log.path).resolve()))
        restore = experiment_id is None and key in _SESSIONS
        if restore:
            self.session.experiment_id = _SESSIONS[key]
        _SESSIONS[key] = self.session.experiment_id
        self._thread: threading.Thread | None = None
        self.inputs: InputSet | None = None
        self.cards: list[SampleCard] = []

        # what to call
        self.prompt_file = W.Dropdown(options=files, value=str(prompt or files[0]), description="prompt",
                                      style=WIDE, layout=W.Layout(width="360px"))
        self.variant = W.Dropdown(description="variant", style=WIDE, layout=W.Layout(width="220px"))
        self.version = W.Dropdown(description="version", style=WIDE, layout=W.Layout(width="330px"))
        self.blind = W.Checkbox(value=False, description="blind: every variant, names hidden", indent=False)
        self.system = W.Textarea(description="system", layout=W.Layout(width="98%", height="70px"))
        self.user = W.Textarea(description="user", layout=W.Layout(width="98%", height="90px"))
        self.save_version = W.Button(description="Save as new version", icon="save", layout=W.Layout(width="auto"),
                                     tooltip="the edited template becomes a new, logged prompt version")
        self.confirm_button = W.Button(description="Confirm on held-out", icon="check", layout=W.Layout(width="auto"),
                                       tooltip="this version against the file's version of the variant on the "
                                               "input set's held-out part (lab.confirm); every use is logged")
        self.model = W.Text(value=model, description="model", style=WIDE, layout=W.Layout(width="420px"))
        self.temperature = W.FloatSlider(value=float(p.get("temperature", 0.7)), min=0, max=2, step=0.05,
                                         description="temperature", style=WIDE, layout=W.Layout(width="320px"))
        self.max_tokens = W.BoundedIntText(value=int(p.get("max_tokens", 256)), min=1, max=32768,
                                           description="max tokens", style=WIDE, layout=W.Layout(width="170px"))
        self.input_set = W.Dropdown(options=sets, value=str(inputs) if inputs else (sets[0] if sets else None),
                                    description="input set", style=WIDE, layout=W.Layout(width="360px"))
        self.input = W.Dropdown(description="input", style=WIDE, layout=W.Layout(width="300px"))
        self.typed = W.Textarea(placeholder="type an input (with several template variables: 'name: value' lines)",
                                layout=W.Layout(width="98%", height="50px"))
        # actions
        auto = W.Layout(width="auto")
        self.run_button = W.Button(description="Run", button_style="primary", icon="play", layout=auto)
        self.retry_button = W.Button(description="Retry", icon="redo", tooltip="another sample of the same call",
                                     layout=auto)
        self.reset_button = W.Button(description="Reset", icon="eraser", tooltip="new conversation, clean context",
                                     layout=auto)
        self.run_set_button = W.Button(description="Run input set", icon="list", layout=auto,
                                       tooltip="this variant over every input of the set, one sample each")
        self.cancel_button = W.Button(description="Cancel", button_style="warning", icon="stop", disabled=True,
                                      layout=auto)
        self.follow_text = W.Text(placeholder="follow-up turn in the same conversation", layout=W.Layout(width="60%"))
        self.follow_button = W.Button(description="Send", icon="reply", layout=auto)
        self.rounds = W.BoundedIntText(value=1, min=1, max=10, description="rounds", style=WIDE,
                                       layout=W.Layout(width="130px"))
        self.critique_button = W.Button(description="Self-critique", icon="search", layout=auto)
        self.rubric = W.Textarea(value=DEFAULT_RUBRIC, description="rubric", style=WIDE,
                                 layout=W.Layout(width="60%", height="48px"),
                                 tooltip="what a good answer does: the critique checks the answer against it")
        self.progress = W.IntProgress(value=0, min=0, max=1, description="", layout=W.Layout(width="200px"))
        self.status = W.HTML("ready")
        # what came back
        self.samples_box = W.HBox(layout=W.Layout(flex_flow="row wrap"))
        self.samples_box.add_class("promptlab-history")
        self.input_set_view = W.HTML("")  # the table of the latest input set run
        self.frequencies = W.HTML("")
        self.context = W.HTML("")
        self.critique_view = W.HTML("")
        self.reveal_button = W.Button(description="Reveal", icon="eye", layout=W.Layout(width="auto", display="none"),
                                      tooltip="show which variant each sample was, and the mean score per variant")
        self.reveal_view = W.HTML("")
        self.reveal_button.on_click(lambda _: self._reveal())
        self.undo_button = W.Button(description="Undo reset", icon="undo", layout=W.Layout(width="auto", display="none"),
                                    tooltip="bring back the cards and the conversation (until the next call)")
        self.undo_button.on_click(lambda _: self._undo_reset())
        self._undo: tuple | None = None
        self._shown: set[str] = set()  # ids of the records that have a card
        self._rated: set[str] = set()
        self._scores: dict[str, float] = {}
        self._warm: set[str] = set()  # models this workbench has called (a local model loads on its first call)
        self._blind_turn: Any = None
        self._blind_next = 0

        self._actions = [self.run_button, self.retry_button, self.reset_button, self.run_set_button,
                         self.follow_button, self.critique_button, self.save_version, self.confirm_button]
        self.prompt_file.observe(self._on_prompt, names="value")
        self.variant.observe(self._on_variant, names="value")
        self.version.observe(self._on_version, names="value")
        self.input_set.observe(self._on_input_set, names="value")
        self.save_version.on_click(lambda _: self._guard(self._save_version))
        self.confirm_button.on_click(lambda _: self._start("confirm", self._do_confirm))
        self.run_button.on_click(lambda _: self._start("run", self._do_run))
        self.retry_button.on_click(lambda _: self._start("retry", self._do_retry))
        self.reset_button.on_click(lambda _: self._reset())
        self.run_set_button.on_click(lambda _: self._start("input set", self._do_run_set))
        self.follow_button.on_click(lambda _: self._start("follow-up", self._do_follow_up))
        self.critique_button.on_click(lambda _: self._start("self-critique", self._do_critique))
        self.cancel_button.on_click(lambda _: self._cancel())

        template = W.Accordion([W.VBox([self.system, self.user, W.HBox([self.save_version, self.confirm_button])])],
                               titles=("template",))
        template.selected_index = None
        self._blind_hides = [self.variant, self.version, template]  # each would tell the variants apart
        self.blind.observe(self._on_blind, names="value")
        context = W.Accordion([self.context], titles=("whole context of the latest call",))
        self.tried = W.Output()  # "tried so far", redrawn after each call while it is open
        self.tried_view = W.Accordion([self.tried], titles=("what you have tried so far (updates after each call)",))
        self.tried_view.selected_index = None
        self.tried_view.observe(lambda _c: self._refresh_tried(), names="selected_index")
        super().__init__([
            W.HBox([self.prompt_file, self.variant, self.version], layout=W.Layout(flex_flow="row wrap")),
            self.blind, template,
            W.HBox([self.model, self.temperature, self.max_tokens], layout=W.Layout(flex_flow="row wrap")),
            W.HBox([self.input_set, self.input]), self.typed,
            W.HBox([self.run_button, self.retry_button, self.reset_button, self.undo_button, self.run_set_button,
                    self.cancel_button, self.progress]),
            self.status, self.input_set_view, self.samples_box, W.HBox([self.reveal_button, self.reveal_view]),
            self.frequencies,
            W.HBox([self.follow_text, self.follow_button]), W.HBox([self.rounds, self.rubric, self.critique_button]),
            self.critique_view, context, self.tried_view,
        ])
        self.add_class("promptlab-workbench")
        self._load_prompt_controls(variant)
        self._on_input_set({"new": self.input_set.value})
        if restore or experiment_id is not None:
            self._restore()

    # ---- controls that change what is called -------------------------------------------------

    @property
    def experiment_id(self) -> str:
        """The log's experiment id for every call made from this workbench."""
        return self.session.experiment_id

    def _load_prompt_controls(self, variant: str | None = None) -> None:
        names = list(self.session.prompt.variants)
        self.variant.options = names
        self.variant.value = variant if variant in names else self.session.variant.name

    def _on_prompt(self, change: dict) -> None:
        def switch() -> None:
            self.session.set_prompt(change["new"])
            self.session.reset()  # a conversation belongs to one prompt file
            self._load_prompt_controls()
            self.input_set_view.value = ""
            self.critique_view.value = ""
            if self.cards:  # a new group: the earlier cards stay above, under their own file
                self.cards.append(GroupHeading(str(change["new"])))
                self.samples_box.children = tuple(self.cards)
        self._guard(switch)

    def _on_blind(self, change: dict) -> None:
        for w in self._blind_hides:
            w.layout.display = "none" if change["new"] else None

    def _on_variant(self, change: dict) -> None:
        if change["new"] is None:
            return

        def apply() -> None:
            self.session.set_variant(change["new"])
            self._show_templates()
            self._refresh_versions()
        self._guard(apply)

    def _show_templates(self) -> None:
        t = dict(self.session.variant.templates)
        self.system.value = t.get("system", "")
        self.user.value = t.get("user", "")

    def _refresh_versions(self) -> None:
        opts = [(f"{v} ({'file' if v == self.session.prompt.variant(self.session.variant.name).version else when[:19]})",
                 v) for v, when, _ in self.session.versions()]
        self._switching = True
        try:
            self.version.options = opts
            self.version.value = self.session.variant.version
        finally:
            self._switching = False

    def _on_version(self, change: dict) -> None:
        if getattr(self, "_switching", False) or change["new"] is None or change["new"] == self.session.variant.version:
            return
        def use() -> None:
            self.session.use_version(change["new"])
            self._show_templates()
            self._say(f"version {change['new']} is back in use")

        self._guard(use)

    def _save_version(self) -> None:
        v = self.session.edit(system=self.system.value, user=self.user.value)
        self._refresh_versions()
        self._say(f"saved version {v.version} of {v.name}; the previous one is in the version list")

    def _on_input_set(self, change: dict) -> None:
        path = change["new"]
        ids: list[str] = []
        if path:
            try:
                # a split input set shows (and runs) its dev part; the held-out part is for Confirm
                self.inputs, _, note = choose_part(load_inputs(path), self.session.log, None)
                ids = [r.id for r in self.inputs]
                if note:
                    self._say(note)
            except LabError as exc:
                self.inputs = None
                self._error(exc)
        self.input.options = [TYPED] + ids
        self.input.value = ids[0] if ids else TYPED

    def _row(self) -> Any:
        if self.input.value == TYPED or self.inputs is None:
            return self.session.typed_input(self.typed.value)
        return next(r for r in self.inputs if r.id == self.input.value)

    def _apply_settings(self) -> None:
        self.session.model = self.model.value.strip()
        self.session.set_params(temperature=float(self.temperature.value), max_tokens=int(self.max_tokens.value))
        if (self.system.value, self.user.value) != (dict(self.session.variant.templates).get("system", ""),
                                                   dict(self.session.variant.templates).get("user", "")):
            self._save_version()

    # ---- actions (each in a worker thread) ---------------------------------------------------

    def _do_run(self) -> None:
        self._apply_settings()
        row = self._row()
        if self.blind.value:
            self.session.compare(row)
        else:
            self.session.run(row)
        self.critique_view.value = ""

    def _do_retry(self) -> None:
        self._apply_settings()
        self.session.reroll()

    def _do_follow_up(self) -> None:
        self._apply_settings()
        self.session.follow_up(self.follow_text.value)
        self.follow_text.value = ""

    def _do_critique(self) -> None:
        self._apply_settings()
        rounds = int(self.rounds.value)
        self.progress.max = 2 * rounds
        parts: list[str] = []

        def shown(crit: RunRecord, rev: RunRecord | None) -> None:
            self.progress.value += 2
            graded = self._grades([rev]).get(rev.id) if rev is not None else None
            grade = f" graded <b>{html_text(graded.text)}</b>" if graded is not None else ""
            after = (f"→ revision {crit.round} {self._badge(rev)}{grade}" if rev is not None
                     else "<i>stopped: the critique found nothing to fix</i>" if crit.outcome != "error" else "")
            parts.append(f"<li><b>round {crit.round}</b> critique {self._badge(crit)} {after}</li>")
            self.critique_view.value = ("<b>Self-critique</b> (the critiques and revisions are cards above)<ul>"
                                        + "".join(parts) + "</ul>")
            self._show_samples()

        self.session.critique(rounds, on_round=shown, rubric=self.rubric.value)

    def _do_run_set(self) -> None:
        self._apply_settings()
        if self.inputs is None:
            raise LabError("pick an input set first")
        rows = list(self.inputs)
        self.progress.max = len(rows)

        def one_done(_outcome: str) -> None:
            self.progress.value += 1

        records = self.session.run_set(rows, on_done=one_done)
        table = input_set_table(records, self.session.prompt, self.session.log)
        self.input_set_view.value = _input_set_html(table, self.inputs.path, self._input_set_grid())
        self.critique_view.value = ""

    def _do_confirm(self) -> None:
        self._apply_settings()
        if not self.input_set.value:
            raise LabError("pick an input set with a held-out part first (lab.split_inputs)")
        s = self.session
        conf = confirm(s.prompt, self.input_set.value, candidate=s.variant, baseline=s.prompt.variant(s.variant.name),
                       model=s.model, params={k: v for k, v in s.params.items() if k != "seed"}, log=s.log,
                       progress="off")
        self.input_set_view.value = conf.findings()._repr_html_()

    def _input_set_grid(self) -> str:
        """Every input-set run of this prompt file in this workbench, one column per variant and version
        (edit the prompt, run the set again, and the new version stands next to the old)."""
        here = Path(str(self.session.prompt.path)).resolve()
        records = [r for t in self.session.turns if t.kind == "input set" for r in t.samples
                   if r.prompt_path is None or Path(r.prompt_path).resolve() == here]
        if not records:
            return ""
        grades = self.session.log.grades(experiment=self.experiment_id)
        return results_grid(records_frame(records), grades, columns="version").html

    def _badge(self, rec: RunRecord) -> str:
        color, badge = OUTCOME_STYLE.get(rec.outcome, ("#444", rec.outcome))
        return f'<span style="color:{color}">[{html_text(badge)}]</span>'

    def _start(self, what: str, fn: Callable[[], None]) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._say("busy: wait for the call in flight, or Cancel it")
            return
        self._cancelled = False
        self._undo = None  # a reset can be undone until the next call
        self.undo_button.layout.display = "none"
        if what != "input set":
            self.input_set_view.value = ""  # the table belongs to the input set run, not to what follows
        for b in self._actions:
            b.disabled = True
        self.cancel_button.disabled = False
        self.progress.value, self.progress.max = 0, 1
        self.progress.bar_style = "info"
        model = self.model.value.strip()
        cold = model.startswith("local:") and model not in self._warm
        self._warm.add(model)
        self.status.value = (f"<i>{html_text(what)}: loading the model ({html_text(model)}); the first call takes "
                             "longer…</i>" if cold else f"<i>{html_text(what)}: calling {html_text(model)}…</i>")
        self._thread = threading.Thread(target=self._work, args=(what, fn), name=f"promptlab-{what}", daemon=True)
        self._thread.start()

    def _work(self, what: str, fn: Callable[[], None]) -> None:
        t0 = time.perf_counter()
        before = {r.id for r in self.session.samples}
        try:
            fn()
            self.progress.value = self.progress.max
            failed = [r for r in self.session.samples if r.id not in before and r.outcome == "error"]
            if failed:  # the call was made and logged, but the model answered with an error
                self.progress.bar_style = "danger"
                self._error(f"{what}: the call failed: {failed[-1].error}")
                return
            self.progress.bar_style = "success"
            self.status.value = f"{html_text(what)} done in {time.perf_counter() - t0:.1f}s"
        except CallCancelled:
            self.progress.bar_style = "warning"
            self._say(f"{what}: cancelled (nothing was logged for the call in flight)")
        except LabError as exc:
            self.progress.bar_style = "danger"
            self._error(exc)
            self._failed(what, exc)
        except Exception as exc:  # show a readable message, never a traceback dump in the widget
            self.progress.bar_style = "danger"
            self._error(exc, unexpected=True)
            self._failed(what, exc, unexpected=True)
        finally:
            for b in self._actions:
                b.disabled = False
            self.cancel_button.disabled = True
            self._show_samples()
            self._refresh_tried()

    def _cancel(self) -> None:
        self._cancelled = True
        if self.session.cancel():
            self._say("cancelling the call in flight…")
        else:
            self._say("cancel: no call in flight")

    def _failed(self, what: str, exc: BaseException, unexpected: bool = False) -> None:
        if isinstance(exc, CallCancelled):
            return
        kind = f"{type(exc).__name__}: " if unexpected else ""
        self._show_samples()  # the calls that did finish get their cards first
        self.cards.append(ErrorCard(f"{what} failed", redact(kind + str(exc))))
        self.samples_box.children = tuple(self.cards)

    def _reset(self) -> None:
        self._undo = (list(self.session.turns), self.session.conversation, list(self.cards), set(self._shown),
                      self.critique_view.value, self.input_set_view.value)
        self.session.reset()
        self.critique_view.value = ""
        self.input_set_view.value = ""
        self.cards = []
        self._shown = set()
        self._show_samples()
        self.undo_button.layout.display = None
        self._say("reset: the next call starts a new conversation with a clean context (Undo reset brings the "
                  "cards back until then)")

    def _undo_reset(self) -> None:
        if self._undo is None:
            return
        turns, conversation, cards, shown, critique, input_set = self._undo
        self.session.turns, self.session.conversation = turns, conversation
        self.cards, self._shown = cards, shown
        self.critique_view.value, self.input_set_view.value = critique, input_set
        self._undo = None
        self.undo_button.layout.display = "none"
        self._show_samples()
        self._say("reset undone: the cards and the conversation are back")

    def _guard(self, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except LabError as exc:
            self._error(exc)

    def tried_so_far(self) -> Any:
        """The outcome of every call made from this workbench, per variant (from the log), with n on
        each bar. Until a blind round is revealed, variant names are hidden here too."""
        from .. import plots
        from .compare import blinded

        runs = self.session.log.runs(experiment=self.experiment_id)
        hidden = any(c.hidden for c in self.cards if isinstance(c, SampleCard))
        return plots.outcome_rates(blinded(runs) if hidden else runs, self.session.log.grades(),
                                   split_by_tag=False)

    def _refresh_tried(self) -> None:
        from .compare import figure_output

        if self.tried_view.selected_index is None:
            return
        try:
            self.tried.outputs = (figure_output(self.tried_so_far()),)
        except LabError as exc:
            self._error(exc)

    def wait(self, timeout: float | None = 120) -> None:
        """Block until the action in flight has finished (for scripts and tests)."""
        if self._thread is not None:
            self._thread.join(timeout)

    # ---- what came back ----------------------------------------------------------------------

    def _show_samples(self) -> None:
        """Add a card for every new sample; earlier cards stay (the history since the last Reset)."""
        turns = self.session.turns
        follow_ups = 0
        for t in turns:
            if t.kind == "follow-up":
                follow_ups += 1
            fresh = [r for r in t.samples if r.id not in self._shown]
            if not fresh:
                continue
            if t.kind == "compare":  # blind: letters in a shuffled order, the same card keeps its letter
                if t is not self._blind_turn:
                    self._blind_turn, self._blind_next = t, 0
                    self.reveal_view.value = ""
                    self.reveal_button.layout.display = "none"
                random.Random(fresh[0].id).shuffle(fresh)
            badges = self._grades(fresh) if t.kind != "critique" else {}
            for rec in fresh:
                if t.kind == "compare":
                    label = f"sample {_letters(self._blind_next)}"
                    self._blind_next += 1
                else:
                    label = self._label(t, rec, follow_ups)
                self._shown.add(rec.id)
                card = SampleCard(rec, label, self._rate, blind=t.kind == "compare", grade=badges.get(rec.id))
                self.cards.append(card)
            if t.kind == "compare":  # the log knows which samples were blind, for a restored session
                self.session.log.add_event(self.experiment_id, "blind_round", run_ids=[r.id for r in fresh])
        self.samples_box.children = tuple(self.cards)
        samples = list(self.session.samples)
        blind = bool(turns) and turns[-1].kind == "compare"
        self.frequencies.value = self._frequencies(samples, blind)
        self.context.value = self._context()

    def _restore(self) -> None:
        """Cards for the calls this workbench session already logged (the cell was run again): blind
        rounds that were never revealed come back blind."""
        log = self.session.log
        try:
            rows = log.runs(experiment=self.experiment_id)
            events = log.events(self.experiment_id)
        except LabError:
            return
        if rows.empty:
            return
        rows = rows[rows["id"].map(lambda i: i not in self._shown)]
        blind: set[str] = set()
        revealed: set[str] = set()
        for _, e in events.iterrows():
            ids = set((e["detail"] or {}).get("run_ids", []))
            (blind if e["kind"] == "blind_round" else revealed if e["kind"] == "blind_revealed" else set()).update(ids)
        records = [_record(r) for r in rows.to_dict("records")]
        badges = self._grades([r for r in records if r.id])
        self.cards.append(GroupHeading(f"restored from the log: {plural(len(records), 'earlier call')} of this "
                                       "workbench"))
        letter = 0
        for rec in records:
            is_blind = rec.id in blind
            if is_blind:
                label, letter = f"sample {_letters(letter)}", letter + 1
            else:
                label = f"{rec.variant} · {rec.input_id}"
            card = SampleCard(rec, label, self._rate, blind=is_blind, grade=badges.get(rec.id))
            card.revealed = rec.id in revealed
            card.show()
            self._shown.add(rec.id)
            self.cards.append(card)
        self.samples_box.children = tuple(self.cards)
        self._say(f"restored {plural(len(records), 'card')} of {self.experiment_id} from the log")

    def _grades(self, records: list[RunRecord]) -> dict[str, GradeBadge]:
        try:
            return grade_records(records, self.session.prompt,
                                 self.session.log)
        except LabError:
            return {}

    @staticmethod
    def _label(t: Any, rec: RunRecord, follow_ups: int) -> str:
        k = t.samples.index(rec) + 1
        if t.kind == "critique":
            return f"round {rec.round} critique"
        if t.kind == "revision":
            return f"revision {rec.round}" + (f" · sample {k}" if k > 1 else "")
        if t.kind == "input set":
            return f"{rec.variant} · {rec.input_id}"
        if t.kind == "follow-up":
            return f"turn {follow_ups + 1} · {rec.variant} · sample {k}"
        return f"{rec.variant} · sample {k}"

    def _frequencies(self, samples: list[RunRecord], blind: bool) -> str:
        if len(samples) < 2 or (self.session.turns and self.session.turns[-1].kind == "input set"):
            return ""
        key = (lambda r: "") if blind else (lambda r: r.variant or "")
        rows = []
        for group in dict.fromkeys(key(r) for r in samples):
            these = [r for r in samples if key(r) == group]
            # "the same answer" as lab.retry and lab.plots.retry_spread count it (lab.text.normalize),
            # shown as the model wrote it most often; correctness is never judged here: only graders say
            shown: dict[str, Counter] = {}
            for r in these:
                text = " ".join((r.output or f"[{r.outcome}]").split()) if r.outcome != "error" else "[error]"
                same = (normalize(r.output) or f"[{r.outcome}]") if r.outcome != "error" else "[error]"
                shown.setdefault(same, Counter())[text] += 1
            for forms in sorted(shown.values(), key=lambda c: -sum(c.values())):
                rows.append(f"<tr><td>{html_text(group)}</td><td>{sum(forms.values())}/{len(these)}</td>"
                            f"<td>{_pre(forms.most_common(1)[0][0])}</td></tr>")
        th = "<th style='text-align:left;padding:2px 12px 2px 0;white-space:nowrap'>"
        head = "" if blind else f"{th}variant</th>"
        if blind:
            rows = [r.replace("<tr><td></td>", "<tr>", 1) for r in rows]
        return ("<b>answers across samples</b><table class='promptlab-frequencies'><tr>" + head +
                f"{th}samples</th>{th}answer</th></tr>" + "".join(rows) + "</table>")

    def _context(self) -> str:
        turns = self.session.turns
        if not turns or not turns[-1].samples:
            return "<i>no call yet</i>"
        last = turns[-1]
        if last.kind == "compare" and any(c.hidden for c in self._blind_cards()):
            return ("<i class='promptlab-blind-context'>hidden in a blind comparison: the prompt would tell which "
                    "variant each sample is. Rate every sample, then Reveal, to see the whole context.</i>")
        rec = last.samples[-1]
        parts = [f"<div><b>{html_text(m['role'])}</b>{_pre(m['content'])}</div>" for m in rec.messages]
        parts.append(f"<div style='color:#777'>model {html_text(rec.model)}, variant {html_text(rec.variant)} version "
                     f"{html_text(rec.prompt_version)}, input {html_text(rec.input_id)}, "
                     f"{plural(rec.input_tokens or 0, 'input token')}, params {html_text(rec.params)}</div>")
        return "".join(parts)

    def _blind_cards(self) -> list[SampleCard]:
        """The cards of the latest blind round."""
        turn = self._blind_turn
        ids = {r.id for r in turn.samples} if turn is not None else set()
        return [c for c in self.cards if isinstance(c, SampleCard) and c.blind and c.record.id in ids]

    def _rate(self, card: SampleCard) -> None:
        if card.score.value in (UNRATED, None):
            card.rated.value = "<span style='color:#d62728'>pick a score from 1 to 5 first</span>"
            return
        blind = card.hidden  # a rating given after the reveal is not blind
        try:
            self.session.rate(card.record.id, card.score.value, card.note.value, blind=blind)
        except LabError as exc:
            card.rated.value = f"<span style='color:#d62728'>{html_text(exc)}</span>"
            return
        card.rated.value = f"rated {card.score.value}/5" + (" (blind)" if blind else "")
        self._rated.add(card.record.id)
        self._scores[card.record.id] = float(card.score.value)
        if card.blind:
            round_ = self._blind_cards()
            left = [c for c in round_ if c.record.id not in self._rated]
            if card in round_ and not any(c.revealed for c in round_):
                self.reveal_button.layout.display = None if not left else "none"
                self.reveal_view.value = ("" if not left else
                                          f"<i>{plural(len(left), 'sample')} of this blind round left to rate; "
                                          "nothing is revealed before the last rating</i>")
        self.context.value = self._context()

    def _reveal(self) -> None:
        """After every sample of the blind round is rated: the variants and the mean score per variant, with n."""
        round_ = self._blind_cards()
        if not round_ or any(c.record.id not in self._rated for c in round_):
            self._say("rate every sample of the blind round first")
            return
        per: dict[str, list[float]] = {}
        for c in round_:
            per.setdefault(str(c.record.variant), []).append(self._scores[c.record.id])
            c.show(revealed=True)
        rows = "".join(f"<tr><td>{html_text(v)}</td><td>{sum(x) / len(x):.1f} / 5</td><td>n = {len(x)}</td></tr>"
                       for v, x in sorted(per.items(), key=lambda kv: -sum(kv[1]) / len(kv[1])))
        self.reveal_view.value = ("<div class='promptlab-reveal'><b>Revealed</b>: mean blind score per variant"
                                  f"<table class='promptlab-table'>{rows}</table></div>")
        self.reveal_button.layout.display = "none"
        self.session.log.add_event(self.experiment_id, "blind_revealed", run_ids=[c.record.id for c in round_])
        self.context.value = self._context()

    def _say(self, text: str) -> None:
        self.status.value = html_text(text)

    def _error(self, exc: BaseException | str, unexpected: bool = False) -> None:
        kind = f"{type(exc).__name__}: " if unexpected else ""
        self.status.value = (f"<span class='promptlab-error' style='color:#d62728'>error: "
                             f"{html_text(redact(kind + str(exc)))}</span>")


# (prompt file, log) -> the experiment id of the latest workbench on them in this kernel
_SESSIONS: dict[tuple[str, str], str] = {}
_RECORD_FIELDS = {f.name for f in dataclasses.fields(RunRecord)}


def _record(row: dict[str, Any]) -> RunRecord:
    """A run row of the log as the record a card shows."""
    values: dict[str, Any] = {k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()
                              if k in _RECORD_FIELDS}
    return RunRecord(**values)


def _letters(i: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA: a blind sample's name."""
    out = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        out = chr(65 + r) + out
    return out


def _input_set_html(table: Any, path: str, grid: str = "") -> str:
    """A summary line (outcomes and grades) over the results grid of the input set runs."""
    n = len(table)
    counts = Counter(table["outcome"])
    grades = Counter(g for g in table["grade"] if g)
    summary = (f"{plural(n, 'input')} of {html_text(path)}: " + ", ".join(f"{k} {v}" for k, v in counts.items())
               + ("; graded: " + ", ".join(f"{k} {v}" for k, v in grades.items()) if grades else ""))
    return f"<div class='promptlab-input-set'><b>Input set</b>: {summary}{grid}</div>"


def workbench(prompt: str | Path | None = None, inputs: str | Path | None = None, **kwargs: Any) -> Workbench:
    """The workbench widget: ``lab.workbench("prompts/sentiment.yaml", "prompts/sentiment_inputs.yaml")``.

    Keyword arguments: ``variant``, ``model`` (default ``local:smollm2``), ``params``
    (temperature, max_tokens, ...), ``log``, ``prompts_dir`` (where to list prompt files and
    input sets; default ``prompts``), ``experiment_id`` (default ``workbench-<time>-<hex>``).
    Every call it makes is logged under ``.experiment_id``.
    """
    return Workbench(prompt, inputs, **kwargs)
