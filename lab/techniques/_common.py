"""Shared plumbing for techniques that make their own calls: experiment records, seeds, graders."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import ParameterError
from ..graders import Grader, check_grader_list, grader_from_spec
from ..judges import check_model
from ..prompts import PromptFile, Variant, load_prompt, version_of
from ..store import RunLog, new_id


def experiment_id(name: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{name}-{stamp}-{new_id()[:4]}"


def open_log(log: RunLog | str | Path | None) -> RunLog:
    return log if isinstance(log, RunLog) else RunLog(log)


def as_prompt(prompt: str | Path | PromptFile) -> PromptFile:
    return prompt if isinstance(prompt, PromptFile) else load_prompt(prompt)


def resolve_graders(grader: Grader | list[Grader] | None, prompt: PromptFile | None) -> list[Grader]:
    """The graders to use: those given, else the prompt file's ``grader:``, else none."""
    given = check_grader_list(grader)
    if given:
        return given
    spec = getattr(prompt, "grader", None) if prompt is not None else None
    if spec and prompt is not None:
        named = grader_from_spec(spec, f"{prompt.path}: grader")
        check_model(named)  # a judge's model, before any call
        return [named]
    return []


def adhoc_variant(name: str, task: str, system: str | None, params: dict[str, Any]) -> Variant:
    """A Variant for calls that do not come from a prompt file (conversations, critiques)."""
    templates = (("system", system),) if system else ()
    return Variant(name=name, task=task, path=f"<{task}>", templates=templates, params=dict(params),
                   escape_hatch=None, version=version_of(templates, dict(params), None))


def check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ParameterError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value
