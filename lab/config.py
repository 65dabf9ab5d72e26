"""How to run an experiment: the options every experiment and technique shares, in one frozen,
validated :class:`RunConfig`.

    cfg = lab.config.RunConfig.of(model="local:smollm2", repeats=3, seed=7)
    lab.experiment("prompts/sentiment.yaml", inputs=..., config=cfg)
    lab.compare_framings("prompts/sentiment.yaml", inputs=..., config=cfg)   # the same options
    lab.experiment("prompts/sentiment.yaml", inputs=..., repeats=3, seed=7)  # or as keywords

Each option is checked here and only here, with the message a user can act on (``repeats must be
>= 1, got 0``). What an experiment runs (prompt file, inputs, variants, log, id) is the
experiment's; how it runs (models, repeats, parameters, seed, concurrency, budget, ...) is this.
"""

from __future__ import annotations

import os
from typing import Any, TypedDict

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from .checks import check_int, check_usd
from .errors import LabError, ParameterError
from .prompts import KNOWN_PARAMS
from .prompts import _check_params as _check_param_values
from .secrets import looks_like_secret
from .text import unstorable

DEFAULT_MODEL = "local:smollm2"
DEFAULT_PARAMS: dict[str, Any] = {"temperature": 0.7, "max_tokens": 256}
MAX_CALLS = 1_000_000  # a bigger plan needs max_calls=... (or $PROMPTLAB_MAX_CALLS, CLI --max-calls)


def default_max_calls() -> int:
    """The largest plan run without an explicit ``max_calls``: $PROMPTLAB_MAX_CALLS or 1,000,000."""
    raw = os.environ.get("PROMPTLAB_MAX_CALLS")
    if raw is None:
        return MAX_CALLS
    try:
        return check_int("PROMPTLAB_MAX_CALLS", int(raw))
    except ValueError:
        raise ParameterError(f"PROMPTLAB_MAX_CALLS must be a whole number of calls, got {raw!r}") from None


#: what techniques that compare variants use unless told otherwise: paired seeds, three repeats
PAIRED: dict[str, Any] = {"repeats": 3, "seed": 0}


class RunOptions(TypedDict, total=False):
    """The keywords :class:`RunConfig` takes (for ``**options`` in signatures)."""

    model: str | list[str]
    repeats: int
    params: dict[str, Any] | None
    seed: int | None
    concurrency: int | None
    budget_usd: float | None
    replay: bool
    provider_options: dict[str, dict[str, Any]] | None
    progress: Any
    confidence: bool
    max_calls: int | None


class RunConfig(BaseModel):
    """How to run: models, repeats, parameters, seed, concurrency, budget, replay, provider options,
    progress, confidence, the largest plan. Frozen: make a changed copy with :meth:`with_`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    models: tuple[Any, ...] = (DEFAULT_MODEL,)
    repeats: int = 1
    params: dict[str, Any] = {}
    seed: int | None = None
    concurrency: int | None = None
    budget_usd: float | None = None
    replay: bool = False
    provider_options: dict[str, dict[str, Any]] = {}
    progress: Any = None  # checked by lab.progress, which owns the modes
    confidence: bool = False
    max_calls: int = MAX_CALLS

    @classmethod
    def of(cls, config: RunConfig | None = None, /, *, defaults: dict[str, Any] | None = None,
           **options: Any) -> RunConfig:
        """The options of ``config`` with ``options`` on top, over ``defaults`` (a technique's own:
        ``repeats=3, seed=0`` for paired comparisons), checked; the error a check raises (a
        :class:`ParameterError` naming the option) comes out as itself."""
        given = config.given() if config is not None else {}
        try:
            return cls.model_validate({**(defaults or {}), **given, **options})
        except ValidationError as exc:
            raise _lab_error(exc) from None

    def given(self) -> dict[str, Any]:
        """The options that were set (not left at their defaults), as keywords :meth:`of` takes."""
        set_ = self.model_dump(exclude_unset=True)
        if "models" in set_:
            set_["model"] = list(set_.pop("models"))
        return set_

    def with_(self, **options: Any) -> RunConfig:
        """A copy with ``options`` changed, checked again."""
        return RunConfig.of(self, **options)

    @model_validator(mode="before")
    @classmethod
    def _options(cls, data: Any) -> Any:
        data = dict(data)
        if "model" in data:
            model = data.pop("model")
            data["models"] = (model,) if isinstance(model, str) else tuple(model or ())
            if not data["models"]:
                raise ParameterError("model: give at least one model string")
        params = dict(data.get("params") or {})
        if "seed" in params:  # params={"seed": 3} / --param seed=3 mean seed=3
            seed = data.get("seed")
            if seed is not None and seed != params["seed"]:
                raise ParameterError(f"two seeds given: seed={seed!r} and params['seed']={params['seed']!r}")
            data["seed"] = params.pop("seed")
        data["params"] = params
        data["provider_options"] = data.get("provider_options") or {}
        if data.get("max_calls") is None:
            data["max_calls"] = default_max_calls()
        return data

    @field_validator("repeats", "concurrency", "max_calls", mode="before")
    @classmethod
    def _count(cls, value: Any, info: Any) -> Any:
        return None if value is None else check_int(info.field_name, value, 1)

    @field_validator("seed", mode="before")
    @classmethod
    def _seed(cls, value: Any) -> Any:
        return None if value is None else check_int("seed", value, 0)

    @field_validator("budget_usd", mode="before")
    @classmethod
    def _budget(cls, value: Any) -> Any:
        return None if value is None else check_usd("budget_usd", value)

    @field_validator("confidence", mode="before")
    @classmethod
    def _confidence(cls, value: Any) -> Any:
        if not isinstance(value, bool):
            raise ParameterError(f"confidence must be True or False, got {value!r}")
        return value

    @field_validator("params", mode="after")
    @classmethod
    def _params(cls, params: dict[str, Any]) -> dict[str, Any]:
        try:  # the same value rules as a prompt file's params; providers check the names
            _check_param_values({k: v for k, v in params.items() if k in KNOWN_PARAMS})
        except ValueError as exc:
            raise ParameterError(f"params: {exc}") from None
        for k, v in params.items():
            if unstorable(v) or unstorable(k):
                raise ParameterError(f"parameter {ascii(k)} {unstorable(v) or unstorable(k)}; pass it as UTF-8 text")
            if looks_like_secret(k, v):
                raise ParameterError(f"parameter {k!r} looks like a secret; keys come from the environment only")
        return params


def _lab_error(exc: ValidationError) -> Exception:
    """The lab's own error behind a pydantic ValidationError (its first), or a ParameterError."""
    first = exc.errors()[0]
    cause = (first.get("ctx") or {}).get("error")
    if isinstance(cause, LabError):
        return cause
    where = ".".join(str(p) for p in first.get("loc", ())) or "options"
    if first.get("type") == "extra_forbidden":
        return ParameterError(f"unknown run option {where!r}; the options are {sorted(RunOptions.__annotations__)}")
    return ParameterError(f"{where}: {first.get('msg')}, got {first.get('input')!r}")
