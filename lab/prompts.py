"""Prompt files: load, validate, render, and version them.

A prompt file is YAML under ``prompts/``. It names a task and its variants, so a persona
framing and an honest-context framing of the same task live side by side::

    task: sentiment
    escape_hatch: UNSURE            # the declared way out; an output saying it is "escaped"
    params: {temperature: 0.7, max_tokens: 48}
    variants:
      persona:
        system: "You are a world-class sentiment analyst."
        user: "Classify: {{ text }}"
      honest:
        user: |
          I'm sorting reviews for a small shop ... If you can't tell, answer UNSURE.
          Review: {{ text }}

A variant has ``system`` and/or ``user`` templates, or a list of ``messages`` (role and
content), or named ``parts`` that are joined (one per line) into its user message, so that
:func:`lab.ablate` can leave one out or add one to another variant::

      honest:
        parts:
          - who: I'm checking whether a small language model makes things up.
          - format: Answer in one or two words.
          - way_out: If the question has no true answer, answer UNSURE.
          - question: "Question: {{ question }}"
 Templates are Jinja2, rendered in a sandbox with undefined variables as errors.
Each variant's version is a hash of everything that changes what the model sees or how the
output is read (templates, parameters, escape hatch); editing a variant makes a new version.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import jinja2
import jinja2.meta
import jinja2.nodes
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ._yaml import YamlSyntaxError, line_of, load_with_lines, read_text
from .errors import GraderError, PromptFileError
from .graders import check_grader_spec
from .names import name_problem
from .text import EscapeHatch, normalize_for_matching  # noqa: F401  (part of a prompt file)

Role = Literal["system", "user", "assistant"]

#: Filters a template may use; every other filter (attr, map, format, pprint, ...) is refused when
#: the file loads. Each takes text or a list and gives text or a list back, never a Python object.
ALLOWED_FILTERS = frozenset({
    "capitalize", "center", "count", "d", "default", "first", "float", "indent", "int", "join", "last",
    "length", "list", "lower", "replace", "reverse", "round", "sort", "string", "striptags", "title",
    "tojson", "trim", "truncate", "unique", "upper", "wordcount", "wordwrap",
})

#: Names Jinja offers every template (plus ``self``, the template itself). The sandbox offers none of
#: them: a template sees the input's variables and nothing else.
JINJA_GLOBALS = frozenset({"self", "range", "dict", "lipsum", "cycler", "joiner", "namespace"})


def _finalize(value: Any) -> Any:
    # a function or method would render as "<function ... at 0x...>"
    if callable(value) and not isinstance(value, jinja2.Undefined):
        raise jinja2.exceptions.SecurityError(f"{type(value).__name__} values never render")
    return value


class _Sandbox(SandboxedEnvironment):
    """Jinja's sandbox, narrowed: no globals, no calls, and ``a.b`` / ``a[b]`` only look up keys of the
    input's own mappings and items of its lists or text, never a Python attribute."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, dict) and attribute in obj:
            return obj[attribute]
        if isinstance(obj, jinja2.runtime.LoopContext) and attribute in {"index", "index0", "first", "last",
                                                                         "length", "revindex", "revindex0"}:
            return getattr(obj, attribute)
        return self.undefined(obj=obj, name=attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(obj, dict) and isinstance(argument, (str, int)) and argument in obj:
            return obj[argument]
        if isinstance(obj, (list, tuple, str)) and isinstance(argument, (int, slice)):
            try:
                return obj[argument]
            except (IndexError, TypeError, ValueError):
                pass
        return self.undefined(obj=obj, name=argument)

    def call(self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        raise jinja2.exceptions.SecurityError("templates cannot call functions or methods")

    intercepted_binops = frozenset({"*", "**", "%"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        """``text * n``, ``n ** m`` and ``"%9999999s" % x``, refused before they build something huge."""
        if operator == "*":
            _check_product(left, right)
        elif operator == "**":
            _check_power(left, right)
        elif isinstance(left, str):
            _check_format(left)
        return _budget().grew(super().call_binop(context, operator, left, right))


#: Default bounds on rendering one message: its size in characters, the seconds it may take, and how
#: many loop iterations it may run. $PROMPTLAB_MAX_MESSAGE_CHARS and $PROMPTLAB_MAX_RENDER_S change the first two.
MAX_MESSAGE_CHARS = 4_000_000
MAX_RENDER_S = 5.0
MAX_LOOP_ITERATIONS = 1_000_000


def render_limits() -> tuple[int, float]:
    """(characters, seconds) a message may take to render, from the environment or the defaults."""
    return (_env_number("PROMPTLAB_MAX_MESSAGE_CHARS", MAX_MESSAGE_CHARS, int),
            _env_number("PROMPTLAB_MAX_RENDER_S", MAX_RENDER_S, float))


def _env_number(name: str, default: Any, kind: type) -> Any:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = 0
    if not value > 0:
        raise PromptFileError(f"{name} must be a positive number, got {raw!r}")
    return value


class _Budget:
    """What one message's rendering may still spend (characters, time, loop iterations)."""

    def __init__(self, chars: int, seconds: float):
        self.chars, self.seconds = chars, seconds
        self.deadline = time.monotonic() + seconds
        self.iterations = 0

    def grew(self, value: Any) -> Any:
        """``value`` (a result just built), refused when it alone is over the size bound."""
        if isinstance(value, (str, list, tuple, _Size)) and len(value) > self.chars:
            raise PromptFileError(f"builds a value of {len(value):,} characters or items, over the limit of "
                                  f"{self.chars:,} (set PROMPTLAB_MAX_MESSAGE_CHARS to change it)")
        return value

    def tick(self) -> None:
        self.iterations += 1
        if self.iterations > MAX_LOOP_ITERATIONS:
            raise PromptFileError(f"its loops run more than {MAX_LOOP_ITERATIONS:,} times; loop over less")
        if not self.iterations & 1023 and time.monotonic() > self.deadline:
            self.timed_out()

    def timed_out(self) -> None:
        raise PromptFileError(f"takes longer than {self.seconds:g} s to render (set PROMPTLAB_MAX_RENDER_S to "
                              "change it)")


_local = threading.local()


def _budget() -> _Budget:
    budget = getattr(_local, "budget", None)
    return budget if budget is not None else _Budget(*render_limits())


def _bounded_loop(value: Any) -> Any:
    """What a template's ``{% for %}`` iterates over, counted against the render budget."""
    budget = _budget()
    for item in value:
        budget.tick()
        yield item


def _check_product(left: Any, right: Any) -> None:
    seq, n = (left, right) if isinstance(right, int) else (right, left)
    if isinstance(seq, (str, list, tuple)) and isinstance(n, int):
        _budget().grew(_Size(len(seq) * n))


def _check_power(left: Any, right: Any) -> None:
    if isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 10_000:
        raise PromptFileError(f"computes {left} ** {right}, a number too large to print; use a smaller power")


_FORMAT_WIDTH = re.compile(r"%[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")


def _check_format(text: str) -> None:
    limit = _budget().chars
    for m in _FORMAT_WIDTH.finditer(text):
        for w in m.groups():
            if w == "*" or (w is not None and len(w) > 9) or (w and int(w) > limit):
                raise PromptFileError(f"formats with a width of {w!r}; over the limit of {limit:,} characters")


class _Size:
    """A stand-in with a length, so a size can be checked before the value is built."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return max(0, min(self.n, 2**62))


def _bounded(name: str, size: Any) -> Any:
    """Jinja's filter ``name``, refused before it builds a value over the size bound (``size``: the
    result's size from the filter's arguments)."""
    base = _BASE_FILTERS[name]
    passes = getattr(base, "jinja_pass_arg", None)  # Jinja hands such a filter its context first

    def bounded(*args: Any, **kwargs: Any) -> Any:
        value, *rest = args[1:] if passes else args
        _budget().grew(_Size(size(str(value), *rest, **kwargs)))
        return base(*args, **kwargs)

    if passes:
        bounded.jinja_pass_arg = passes  # type: ignore[attr-defined]
    return bounded


def _size_center(s: str, width: Any = 80) -> int:
    return max(len(s), int(width))


def _size_indent(s: str, width: Any = 4, *_: Any, **__: Any) -> int:
    pad = len(width) if isinstance(width, str) else int(width)
    return len(s) + (s.count("\n") + 1) * pad


def _size_replace(s: str, old: Any, new: Any, count: Any = None) -> int:
    hits = s.count(str(old)) if count is None else min(int(count), s.count(str(old)))
    return len(s) + hits * max(0, len(str(new)) - len(str(old)))


_ENV = _Sandbox(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=False,
                finalize=_finalize)
_ENV.globals.clear()
_BASE_FILTERS = dict(_ENV.filters)
_ENV.filters.update(center=_bounded("center", _size_center), indent=_bounded("indent", _size_indent),
                    replace=_bounded("replace", _size_replace), _bounded_loop=_bounded_loop)

# Parameters a prompt file may set; providers map them onto their own APIs.
KNOWN_PARAMS = {"temperature", "max_tokens", "top_p", "top_k", "stop", "seed", "repeat_penalty"}


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Role
    content: str


class _EscapeHatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1)
    match: Literal["word", "start", "exact"] = "word"


def _check_params(value: dict[str, Any] | None) -> dict[str, Any] | None:
    if value is None:
        return value
    unknown = sorted(set(value) - KNOWN_PARAMS)
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown}; known: {sorted(KNOWN_PARAMS)}")
    for name in ("temperature", "top_p"):
        v = value.get(name)
        if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool) or not (0 <= v <= 2) or v != v):
            raise ValueError(f"{name} must be a number between 0 and 2, got {v!r}")
    mt = value.get("max_tokens")
    if mt is not None and (not isinstance(mt, int) or isinstance(mt, bool) or mt < 1):
        raise ValueError(f"max_tokens must be a positive integer, got {mt!r}")
    return value


_PART_NAME = re.compile(r"[A-Za-z0-9_\-]+")


def _check_parts(value: list[dict[str, str]] | None) -> list[dict[str, str]] | None:
    if value is None:
        return value
    if not value:
        raise ValueError("parts is empty; list the named parts of the message, e.g. - who: I'm ...")
    seen: set[str] = set()
    for i, part in enumerate(value):
        if len(part) != 1:
            raise ValueError(f"part {i + 1} must be one 'name: text' pair, got {len(part)} keys {sorted(part)}")
        (name, text), = part.items()
        if not _PART_NAME.fullmatch(str(name)):
            raise ValueError(f"part name {name!r} may only use letters, digits, '_' and '-'")
        if name in seen:
            raise ValueError(f"part name {name!r} appears twice; each part needs its own name")
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"part {name!r} is empty; give it text")
        seen.add(name)
    return value


class _VariantSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str | None = None
    system: str | None = None
    user: str | None = None
    parts: list[dict[str, str]] | None = None  # named parts joined (one per line) into the user message
    messages: list[_Message] | None = None
    params: dict[str, Any] | None = None
    escape_hatch: str | _EscapeHatch | None = None
    allow_empty: bool = False  # a message that renders to nothing is an error unless this is true

    _v_params = field_validator("params")(classmethod(lambda cls, v: _check_params(v)))
    _v_parts = field_validator("parts")(classmethod(lambda cls, v: _check_parts(v)))

    @model_validator(mode="after")
    def _one_form(self) -> _VariantSpec:
        if self.messages is not None and (self.system is not None or self.user is not None or self.parts is not None):
            raise ValueError("give either system/user templates (or parts) or a messages list, not both")
        if self.parts is not None and self.user is not None:
            raise ValueError("give either a user template or parts (joined into the user message), not both")
        if self.messages is None and self.user is None and self.parts is None:
            raise ValueError("a variant needs a user template (or parts, or a messages list)")
        if self.messages is not None:
            if not self.messages:
                raise ValueError("messages is empty")
            if self.messages[-1].role != "user":
                raise ValueError("the last message must have role 'user' (it is what the model answers)")
        return self


class _PromptSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    task: str = Field(min_length=1)
    description: str | None = None
    escape_hatch: str | _EscapeHatch | None = None
    params: dict[str, Any] | None = None
    grader: dict[str, Any] | None = None  # how outputs are graded, e.g. {kind: match, mode: numeric}; see lab.grades
    variants: dict[str, _VariantSpec] = Field(min_length=1)

    _v_params = field_validator("params")(classmethod(lambda cls, v: _check_params(v)))

    @field_validator("task")
    @classmethod
    def _task(cls, v: str) -> str:
        problem = name_problem(v)  # it names experiments, and so folders under results/
        if problem:
            raise ValueError(f"task {problem}")
        return v

    @field_validator("variants")
    @classmethod
    def _names(cls, v: dict[str, _VariantSpec]) -> dict[str, _VariantSpec]:
        for name in v:
            problem = name_problem(name if isinstance(name, str) else str(name))
            if problem:
                raise ValueError(f"variant name {problem}")
        return v


@dataclass(frozen=True)
class Variant:
    """One framing of a task: message templates plus parameters, with a content-hash version."""

    name: str
    task: str
    path: str
    templates: tuple[tuple[str, str], ...]  # (role, template source)
    params: dict[str, Any]
    escape_hatch: EscapeHatch | None
    description: str | None = None
    version: str = field(default="")
    variables: frozenset[str] = field(default=frozenset())
    allow_empty: bool = False
    #: the named parts of the user message, in order, when the file gives ``parts:``
    parts: tuple[tuple[str, str], ...] = ()

    @functools.cached_property
    def text_variables(self) -> frozenset[str]:
        """The input variables this variant only prints as text (see :func:`printed_only`)."""
        return printed_only([src for _, src in self.templates])

    def part_variables(self) -> dict[str, frozenset[str]]:
        """Part name -> the input variables its text uses."""
        return {name: check_template(text, f"{self.path}: variants.{self.name}.parts.{name}")
                for name, text in self.parts}

    def render(self, variables: dict[str, Any], *, input_id: str | None = None) -> list[dict[str, str]]:
        """Render the messages for one input. Errors name the file, variant and input."""
        out = []
        for role, source in self.templates:
            where = f"{self.path}: variant {self.name!r} {role} template"
            if input_id is not None:
                where += f" with input {input_id!r}"
            try:
                text = _render(_compiled(source), variables)
            except PromptFileError as exc:  # a render limit
                raise PromptFileError(f"{where}: {exc}") from None
            except jinja2.exceptions.SecurityError as exc:
                raise PromptFileError(f"{where}: blocked by the template sandbox: {exc}") from None
            except jinja2.exceptions.UndefinedError as exc:
                raise PromptFileError(f"{where}: {exc}; add it to the input set or remove it from the template") from None
            except Exception as exc:  # a template filter failing on the input's value
                raise PromptFileError(f"{where}: {type(exc).__name__}: {exc}") from None
            if not text.strip() and not self.allow_empty:
                raise PromptFileError(f"{where}: renders to an empty message; check the input's values, or set "
                                      "allow_empty: true on the variant to send it anyway")
            out.append({"role": role, "content": text})
        return out


@dataclass(frozen=True)
class PromptFile:
    """A loaded, validated prompt file."""

    path: str
    task: str
    description: str | None
    variants: dict[str, Variant]
    grader: dict[str, Any] | None = None  # the file's ``grader:`` spec (checked by lab.graders.check_grader_spec)
    grader_line: int | None = None  # where ``grader:`` is in the file, for errors raised when it is built

    @property
    def grader_where(self) -> str:
        """``<path> line <n>: grader``: how errors about the file's ``grader:`` begin."""
        return f"{self.path}" + (f" line {self.grader_line}" if self.grader_line else "") + ": grader"

    def variant(self, name: str) -> Variant:
        try:
            return self.variants[name]
        except KeyError:
            raise PromptFileError(
                f"{self.path}: no variant {name!r}; the file defines {sorted(self.variants)}"
            ) from None

    def select(self, names: list[str] | None) -> list[Variant]:
        """The named variants (all when ``names`` is None), in file order."""
        if names is None:
            return list(self.variants.values())
        return [self.variant(n) for n in names]

    @property
    def versions(self) -> dict[str, str]:
        return {name: v.version for name, v in self.variants.items()}


_COMPILED: dict[str, jinja2.Template] = {}


def _compiled(source: str) -> jinja2.Template:
    """The template, with each ``{% for %}`` counting its iterations against the render budget."""
    tpl = _COMPILED.get(source)
    if tpl is None:
        ast = _ENV.parse(source)
        for loop in ast.find_all(jinja2.nodes.For):
            loop.iter = jinja2.nodes.Filter(loop.iter, "_bounded_loop", [], [], None, None, lineno=loop.lineno)
        tpl = _COMPILED[source] = _ENV.from_string(ast)
    return tpl


def _render(tpl: jinja2.Template, variables: dict[str, Any]) -> str:
    """Render within the bounds of :func:`render_limits`: the message's size and the time it takes."""
    budget = _local.budget = _Budget(*render_limits())
    try:
        parts, size = [], 0
        for chunk in tpl.generate(**variables):
            size += len(chunk)
            if size > budget.chars:
                raise PromptFileError(f"renders to more than {budget.chars:,} characters, the limit for one "
                                      "message (set PROMPTLAB_MAX_MESSAGE_CHARS to change it)")
            if time.monotonic() > budget.deadline:
                budget.timed_out()
            parts.append(chunk)
        return "".join(parts)
    finally:
        _local.budget = None


def check_template(source: str, where: str) -> frozenset[str]:
    """Parse a template; reject sandbox-escape shapes early; return the variables it needs."""
    try:
        ast = _ENV.parse(source)
    except jinja2.TemplateSyntaxError as exc:
        raise PromptFileError(f"{where}: template syntax error on template line {exc.lineno}: {exc.message}") from None
    for access in ast.find_all((jinja2.nodes.Getattr, jinja2.nodes.Getitem, jinja2.nodes.Filter)):
        attr: object
        if isinstance(access, jinja2.nodes.Getattr):
            attr = access.attr
        elif isinstance(access, jinja2.nodes.Getitem):
            attr = getattr(access.arg, "value", None)
        elif isinstance(access, jinja2.nodes.Filter):  # {{ x|attr('__class__') }}
            attr = getattr(access.args[0], "value", None) if access.name == "attr" and access.args else None
        if isinstance(attr, str) and attr.startswith("_"):
            raise PromptFileError(
                f"{where}: template reads {attr!r}; attributes starting with '_' are blocked by the "
                "sandbox (templates can only use the input's variables)"
            )
    for other in ast.find_all((jinja2.nodes.Include, jinja2.nodes.Import, jinja2.nodes.FromImport, jinja2.nodes.Extends)):
        tag = type(other).__name__.lower().replace("fromimport", "from ... import")
        raise PromptFileError(f"{where}: template uses {{% {tag} %}} (line {other.lineno} of the template); a template "
                              "cannot read other files: put the text in the prompt file (a part or another variant)")
    for use in ast.find_all((jinja2.nodes.Filter, jinja2.nodes.Call, jinja2.nodes.Name, jinja2.nodes.Macro,
                             jinja2.nodes.CallBlock)):
        if isinstance(use, (jinja2.nodes.Call, jinja2.nodes.Macro, jinja2.nodes.CallBlock)):
            raise PromptFileError(f"{where}: template calls a function or method (line {use.lineno} of the "
                                  "template); the sandbox allows none: use a filter such as {{ text|upper }}")
        if isinstance(use, jinja2.nodes.Name):
            if use.ctx == "load" and use.name in JINJA_GLOBALS:
                raise PromptFileError(f"{where}: template uses {use.name!r}, a Jinja global the sandbox does not "
                                      "offer; templates can only use the input's variables")
        elif isinstance(use, jinja2.nodes.Filter) and use.name not in ALLOWED_FILTERS:
            raise PromptFileError(f"{where}: template uses the filter {use.name!r}, which the sandbox does not "
                                  f"allow; allowed: {', '.join(sorted(ALLOWED_FILTERS))}")
    return frozenset(jinja2.meta.find_undeclared_variables(ast))


#: Filters that only change how text looks: a variable printed through them is still printed as text.
_TEXT_FILTERS = frozenset({"capitalize", "center", "indent", "lower", "replace", "string", "striptags", "title",
                           "trim", "truncate", "upper", "wordwrap"})


def printed_only(sources: list[str]) -> frozenset[str]:
    """Variables the templates only print (``{{ text }}``, ``{{ text|upper }}``) and never test,
    loop over or look into: a null, a boolean or a mapping there reaches the model as Python's repr."""
    plain: dict[str, int] = {}
    uses: dict[str, int] = {}
    for source in sources:
        ast = _ENV.parse(source)
        for name in ast.find_all(jinja2.nodes.Name):
            if name.ctx == "load":
                uses[name.name] = uses.get(name.name, 0) + 1
        for out in ast.find_all(jinja2.nodes.Output):
            for printed in out.nodes:
                node: jinja2.nodes.Node | None = printed
                while isinstance(node, jinja2.nodes.Filter) and node.name in _TEXT_FILTERS:
                    node = node.node
                if isinstance(node, jinja2.nodes.Name):
                    plain[node.name] = plain.get(node.name, 0) + 1
    return frozenset(n for n, k in plain.items() if k == uses.get(n))


def _hatch(value: str | _EscapeHatch | None) -> EscapeHatch | None:
    if value is None:
        return None
    if isinstance(value, str):
        return EscapeHatch(text=value)
    return EscapeHatch(text=value.text, match=value.match)


def join_parts(parts: tuple[tuple[str, str], ...] | list[tuple[str, str]]) -> str:
    """The user message template made of named parts: their texts, one per line, in order."""
    return "\n".join(text.rstrip("\n") for _, text in parts)


def version_of(templates: tuple[tuple[str, str], ...], params: dict[str, Any], hatch: EscapeHatch | None) -> str:
    """Content hash of what the model sees and how its output is read."""
    blob = json.dumps(
        {"templates": templates, "params": params, "escape_hatch": hatch and [hatch.text, hatch.match]},
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _format_validation(path: Path, exc: ValidationError, node: Any) -> str:
    lines = [f"{path}: invalid prompt file"]
    for err in exc.errors():
        loc = tuple(err["loc"])
        # pydantic adds union-branch names ("str", "_EscapeHatch", "function-after[...]") to loc
        clean = tuple(p for p in loc if not (isinstance(p, str) and (p in {"str", "_EscapeHatch"} or "[" in p)))
        field_path = ".".join(str(p) for p in clean) or "(top level)"
        line = line_of(node, clean)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling; see docs/prompt-files.md)"
        where = f"line {line}, " if line else ""
        lines.append(f"  {where}{field_path}: {msg}")
    return "\n".join(lines)


def load_prompt(path: str | Path) -> PromptFile:
    """Load and validate a prompt file. Raises :class:`PromptFileError` naming file, field and line."""
    path = Path(path)
    text = read_text(path, "prompt file", PromptFileError)
    try:
        data, node = load_with_lines(text)
    except YamlSyntaxError as exc:
        raise PromptFileError(f"{path} line {exc.line}: {exc}") from None
    if not isinstance(data, dict):
        raise PromptFileError(f"{path}: expected a mapping with 'task' and 'variants', got {type(data).__name__}")
    try:
        spec = _PromptSpec.model_validate(data)
    except ValidationError as exc:
        raise PromptFileError(_format_validation(path, exc, node)) from None

    base_params = dict(spec.params or {})
    variants: dict[str, Variant] = {}
    for name, v in spec.variants.items():
        parts: tuple[tuple[str, str], ...] = ()
        templates: tuple[tuple[str, str], ...]
        if v.messages is not None:
            templates = tuple((m.role, m.content) for m in v.messages)
        elif v.parts is not None:
            parts = tuple(next(iter(p.items())) for p in v.parts)
            templates = tuple([("system", v.system)] if v.system is not None else []) + (("user", join_parts(parts)),)
        else:
            templates = tuple((role, src) for role, src in (("system", v.system), ("user", v.user)) if src is not None)
        needed: set[str] = set()
        for i, (part, src) in enumerate(parts):  # each part on its own, so an error names the part
            line = line_of(node, ("variants", name, "parts", i))
            where = f"variants.{name}.parts.{part}"
            needed |= check_template(src, f"{path} line {line}: {where}" if line else f"{path}: {where}")
        for role, src in templates:
            line = line_of(node, ("variants", name))
            where = f"{path} line {line}: variants.{name}.{role}" if line else f"{path}: variants.{name}.{role}"
            needed |= check_template(src, where)
        params = {**base_params, **(v.params or {})}
        hatch = _hatch(v.escape_hatch if v.escape_hatch is not None else spec.escape_hatch)
        variants[name] = Variant(
            name=name,
            task=spec.task,
            path=str(path),
            templates=templates,
            params=params,
            escape_hatch=hatch,
            description=v.description,
            version=version_of(templates, params, hatch),
            variables=frozenset(needed),
            allow_empty=v.allow_empty,
            parts=parts,
        )
    loaded = PromptFile(path=str(path), task=spec.task, description=spec.description, variants=variants,
                        grader=spec.grader, grader_line=line_of(node, ("grader",)) if spec.grader is not None else None)
    if spec.grader is not None:  # checked now, so a typo fails before any model call
        try:
            check_grader_spec(spec.grader, loaded.grader_where)
        except GraderError as exc:
            raise PromptFileError(str(exc)) from None
    return loaded
