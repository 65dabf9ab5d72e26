"""The workbench: one prompt, one input, try it, re-roll it, talk to it, let it critique itself.

``lab.workbench()`` in a notebook cell shows it. Every button calls a :class:`Session` method
in a worker thread (widget callbacks run on the kernel's main thread, which must stay free);
the thread updates widget values and appends to output areas as calls finish. Model outputs are
always shown as escaped text, never as live HTML.
"""

from __future__ import annotations

import html
import random
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import ipywidgets as W

from ..errors import LabError
from ..inputs import InputSet, load_inputs
from ..runner import DEFAULT_MODEL, DEFAULT_PARAMS
from ..secrets import redact
from ..store import RunLog, RunRecord
from .session import Session, find_input_sets, find_prompt_files

TYPED = "(typed input)"
OUTCOME_STYLE = {"answered": ("#1f77b4", "answered"), "escaped": ("#ff7f0e", "ESCAPED (took the way out)"),
                 "error": ("#d62728", "ERROR")}


def escaped(text: object) -> str:
    """Model or user text as inert HTML: every ``<``, ``>``, ``&`` and quote escaped."""
    return html.escape("" if text is None else str(text), quote=True)


def _pre(text: object, style: str = "") -> str:
    return f'<pre style="white-space:pre-wrap;margin:0;font-size:12px;{style}">{escaped(text)}</pre>'


class SampleCard(W.VBox):
    """One output with its outcome and a rating control (score 1-5 and a note)."""

    def __init__(self, rec: RunRecord, label: str, on_rate: Callable[["SampleCard"], None]):
        self.record = rec
        self.label = label
        color, badge = OUTCOME_STYLE.get(rec.outcome, ("#444", rec.outcome))
        body = rec.error if rec.outcome == "error" else rec.output
        meta = f"{rec.output_tokens or 0} tokens, {rec.latency_ms or 0:.0f} ms"
        self.html = W.HTML(
            f'<div class="promptlab-sample" data-outcome="{escaped(rec.outcome)}" '
            f'style="border:2px solid {color};border-radius:4px;padding:4px">'
            f'<b>{escaped(label)}</b> <span style="color:{color}">{escaped(badge)}</span>'
            f'<span style="color:#777"> · {escaped(meta)}</span>{_pre(body)}</div>'
        )
        self.score = W.Dropdown(options=[("score", None), ("1", 1), ("2", 2), ("3", 3), ("4", 4), ("5", 5)],
                                value=None, layout=W.Layout(width="80px"))
        self.note = W.Text(placeholder="note", layout=W.Layout(width="140px"))
        self.rate_button = W.Button(description="Rate", layout=W.Layout(width="60px"))
        self.rated = W.HTML("")
        self.rate_button.on_click(lambda _: on_rate(self))
        super().__init__([self.html, W.HBox([self.score, self.note, self.rate_button]), self.rated],
                         layout=W.Layout(width="320px", margin="0 6px 6px 0"))


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
        self._thread: threading.Thread | None = None
        self.inputs: InputSet | None = None
        self.cards: list[SampleCard] = []

        # what to call
        self.prompt_file = W.Dropdown(options=files, value=str(prompt or files[0]), description="prompt",
                                      layout=W.Layout(width="360px"))
        self.variant = W.Dropdown(description="variant", layout=W.Layout(width="240px"))
        self.version = W.Dropdown(description="version", layout=W.Layout(width="330px"))
        self.blind = W.Checkbox(value=False, description="blind: every variant, names hidden", indent=False)
        self.system = W.Textarea(description="system", layout=W.Layout(width="98%", height="70px"))
        self.user = W.Textarea(description="user", layout=W.Layout(width="98%", height="90px"))
        self.save_version = W.Button(description="Save as new version", icon="save",
                                     tooltip="the edited template becomes a new, logged prompt version")
        self.model = W.Text(value=model, description="model", layout=W.Layout(width="360px"))
        self.temperature = W.FloatSlider(value=float(p.get("temperature", 0.7)), min=0, max=2, step=0.05,
                                         description="temperature")
        self.max_tokens = W.BoundedIntText(value=int(p.get("max_tokens", 256)), min=1, max=32768,
                                           description="max tokens", layout=W.Layout(width="200px"))
        self.input_set = W.Dropdown(options=sets, value=str(inputs) if inputs else (sets[0] if sets else None),
                                    description="input set", layout=W.Layout(width="360px"))
        self.input = W.Dropdown(description="input", layout=W.Layout(width="300px"))
        self.typed = W.Textarea(placeholder="type an input (with several template variables: 'name: value' lines)",
                                layout=W.Layout(width="98%", height="50px"))
        # actions
        self.run_button = W.Button(description="Run", button_style="primary", icon="play")
        self.retry_button = W.Button(description="Retry", icon="redo", tooltip="another sample of the same call")
        self.reset_button = W.Button(description="Reset", icon="eraser", tooltip="new conversation, clean context")
        self.run_set_button = W.Button(description="Run input set", icon="list",
                                       tooltip="this variant over every input of the set, one sample each")
        self.cancel_button = W.Button(description="Cancel", button_style="warning", icon="stop", disabled=True)
        self.follow_text = W.Text(placeholder="follow-up turn in the same conversation", layout=W.Layout(width="60%"))
        self.follow_button = W.Button(description="Send", icon="reply")
        self.rounds = W.BoundedIntText(value=1, min=1, max=10, description="rounds", layout=W.Layout(width="160px"))
        self.critique_button = W.Button(description="Self-critique", icon="search")
        self.progress = W.IntProgress(value=0, min=0, max=1, description="", layout=W.Layout(width="200px"))
        self.status = W.HTML("ready")
        # what came back
        self.samples_box = W.HBox(layout=W.Layout(flex_flow="row wrap"))
        self.frequencies = W.HTML("")
        self.context = W.HTML("")
        self.critique_view = W.HTML("")
        self.messages = W.Output(layout=W.Layout(max_height="160px", overflow="auto"))

        self._actions = [self.run_button, self.retry_button, self.reset_button, self.run_set_button,
                         self.follow_button, self.critique_button, self.save_version]
        self.prompt_file.observe(self._on_prompt, names="value")
        self.variant.observe(self._on_variant, names="value")
        self.version.observe(self._on_version, names="value")
        self.input_set.observe(self._on_input_set, names="value")
        self.save_version.on_click(lambda _: self._guard(self._save_version))
        self.run_button.on_click(lambda _: self._start("run", self._do_run))
        self.retry_button.on_click(lambda _: self._start("retry", self._do_retry))
        self.reset_button.on_click(lambda _: self._reset())
        self.run_set_button.on_click(lambda _: self._start("input set", self._do_run_set))
        self.follow_button.on_click(lambda _: self._start("follow-up", self._do_follow_up))
        self.critique_button.on_click(lambda _: self._start("self-critique", self._do_critique))
        self.cancel_button.on_click(lambda _: self._cancel())

        template = W.Accordion([W.VBox([self.system, self.user, self.save_version])], titles=("template",))
        template.selected_index = None
        context = W.Accordion([self.context], titles=("whole context of the latest call",))
        super().__init__([
            W.HBox([self.prompt_file, self.variant, self.version]), self.blind, template,
            W.HBox([self.model, self.temperature, self.max_tokens]),
            W.HBox([self.input_set, self.input]), self.typed,
            W.HBox([self.run_button, self.retry_button, self.reset_button, self.run_set_button, self.cancel_button,
                    self.progress]),
            self.status, self.samples_box, self.frequencies,
            W.HBox([self.follow_text, self.follow_button]), W.HBox([self.rounds, self.critique_button]),
            self.critique_view, context, self.messages,
        ])
        self.add_class("promptlab-workbench")
        self._load_prompt_controls(variant)
        self._on_input_set({"new": self.input_set.value})

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
        self._guard(lambda: (self.session.set_prompt(change["new"]), self._load_prompt_controls()))

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
        self._guard(lambda: (self.session.use_version(change["new"]), self._show_templates(),
                             self._say(f"version {change['new']} is back in use")))

    def _save_version(self) -> None:
        v = self.session.edit(system=self.system.value, user=self.user.value)
        self._refresh_versions()
        self._say(f"saved version {v.version} of {v.name}; the previous one is in the version list")

    def _on_input_set(self, change: dict) -> None:
        path = change["new"]
        ids: list[str] = []
        if path:
            try:
                self.inputs = load_inputs(path)
                ids = [r.id for r in self.inputs]
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
        self.session.retry()

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
            after = (f"revision {self._badge(rev)}{_pre(rev.output or rev.error)}" if rev is not None
                     else "<i>stopped: the critique found nothing to fix</i>" if crit.outcome != "error" else "")
            parts.append(f"<div><b>round {crit.round}</b> critique {self._badge(crit)}"
                         f"{_pre(crit.output or crit.error)}{after}</div>")
            self.critique_view.value = "<h4>Self-critique</h4>" + "".join(parts)

        self.session.critique(rounds, on_round=shown)

    def _do_run_set(self) -> None:
        self._apply_settings()
        if self.inputs is None:
            raise LabError("pick an input set first")
        rows = list(self.inputs)
        self.progress.max = len(rows)
        done: list[RunRecord] = []
        for row in rows:
            if self._cancelled:
                break
            done.append(self.session.run(row))
            self.progress.value = len(done)
            self.messages.append_stdout(f"{row.id}: {done[-1].outcome}\n")
        counts = Counter(r.outcome for r in done)
        self._say(f"input set: {len(done)} of {len(rows)} inputs run ({dict(counts)})")

    def _badge(self, rec: RunRecord) -> str:
        color, badge = OUTCOME_STYLE.get(rec.outcome, ("#444", rec.outcome))
        return f'<span style="color:{color}">[{escaped(badge)}]</span>'

    def _start(self, what: str, fn: Callable[[], None]) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._say("busy: wait for the call in flight, or Cancel it")
            return
        self._cancelled = False
        for b in self._actions:
            b.disabled = True
        self.cancel_button.disabled = False
        self.progress.value, self.progress.max = 0, 1
        self.progress.bar_style = "info"
        self.status.value = f"<i>{escaped(what)}: calling {escaped(self.model.value)}…</i>"
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
            self.status.value = f"{escaped(what)} done in {time.perf_counter() - t0:.1f}s"
        except LabError as exc:
            self.progress.bar_style = "danger"
            self._error(exc)
        except Exception as exc:  # show a readable message, never a traceback dump in the widget
            self.progress.bar_style = "danger"
            self._error(exc, unexpected=True)
        finally:
            for b in self._actions:
                b.disabled = False
            self.cancel_button.disabled = True
            self._show_samples()

    def _cancel(self) -> None:
        self._cancelled = True
        if self.session.cancel():
            self._say("cancelling the call in flight…")
        else:
            self._say("cancel: no call in flight")

    def _reset(self) -> None:
        self.session.reset()
        self.critique_view.value = ""
        self._show_samples()
        self._say("reset: the next call starts a new conversation with a clean context")

    def _guard(self, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except LabError as exc:
            self._error(exc)

    def wait(self, timeout: float | None = 120) -> None:
        """Block until the action in flight has finished (for scripts and tests)."""
        if self._thread is not None:
            self._thread.join(timeout)

    # ---- what came back ----------------------------------------------------------------------

    def _show_samples(self) -> None:
        samples = list(self.session.samples)
        blind = self.blind.value and len({s.variant for s in samples}) > 1
        order = list(range(len(samples)))
        if blind:
            random.Random(self.session.conversation_id).shuffle(order)
        cards = []
        for pos, i in enumerate(order):
            rec = samples[i]
            label = f"sample {chr(65 + pos)}" if blind else f"{rec.variant} · sample {i + 1}"
            old = next((c for c in self.cards if c.record.id == rec.id), None)
            cards.append(old if old is not None and old.label == label else SampleCard(rec, label, self._rate))
        self.cards = cards
        self.samples_box.children = cards
        self.frequencies.value = self._frequencies(samples, blind)
        self.context.value = self._context()

    def _frequencies(self, samples: list[RunRecord], blind: bool) -> str:
        if len(samples) < 2:
            return ""
        key = (lambda r: "") if blind else (lambda r: r.variant or "")
        rows = []
        for group in dict.fromkeys(key(r) for r in samples):
            these = [r for r in samples if key(r) == group]
            counts = Counter(" ".join((r.output or f"[{r.outcome}]").split()).casefold() for r in these)
            for text, n in counts.most_common():
                rows.append(f"<tr><td>{escaped(group)}</td><td>{n}/{len(these)}</td><td>{_pre(text)}</td></tr>")
        return ("<b>answers across samples</b><table class='promptlab-frequencies'><tr><th>variant</th>"
                "<th>frequency</th><th>answer</th></tr>" + "".join(rows) + "</table>")

    def _context(self) -> str:
        turns = self.session.turns
        if not turns or not turns[-1].samples:
            return "<i>no call yet</i>"
        rec = turns[-1].samples[-1]
        parts = [f"<div><b>{escaped(m['role'])}</b>{_pre(m['content'])}</div>" for m in rec.messages]
        parts.append(f"<div style='color:#777'>model {escaped(rec.model)}, variant {escaped(rec.variant)} version "
                     f"{escaped(rec.prompt_version)}, {rec.input_tokens or 0} input tokens, "
                     f"params {escaped(rec.params)}</div>")
        return "".join(parts)

    def _rate(self, card: SampleCard) -> None:
        if card.score.value is None:
            card.rated.value = "<span style='color:#d62728'>pick a score from 1 to 5 first</span>"
            return
        try:
            self.session.rate(card.record.id, card.score.value, card.note.value, blind=self.blind.value)
        except LabError as exc:
            card.rated.value = f"<span style='color:#d62728'>{escaped(exc)}</span>"
            return
        reveal = f" (it was {escaped(card.record.variant)})" if self.blind.value else ""
        card.rated.value = f"rated {card.score.value}/5{reveal}"

    def _say(self, text: str) -> None:
        self.status.value = escaped(text)

    def _error(self, exc: BaseException | str, unexpected: bool = False) -> None:
        kind = f"{type(exc).__name__}: " if unexpected else ""
        self.status.value = (f"<span class='promptlab-error' style='color:#d62728'>error: "
                             f"{escaped(redact(kind + str(exc)))}</span>")


def workbench(prompt: str | Path | None = None, inputs: str | Path | None = None, **kwargs: Any) -> Workbench:
    """The workbench widget: ``lab.workbench("prompts/sentiment.yaml", "prompts/sentiment_inputs.yaml")``.

    Keyword arguments: ``variant``, ``model`` (default ``local:smollm2``), ``params``
    (temperature, max_tokens, ...), ``log``, ``prompts_dir`` (where to list prompt files and
    input sets; default ``prompts``), ``experiment_id`` (default ``workbench-<time>-<hex>``).
    Every call it makes is logged under ``.experiment_id``.
    """
    return Workbench(prompt, inputs, **kwargs)
