"""Shared plumbing for techniques that make their own calls: experiment records, seeds, graders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..experiments import Experiment, Runs
from ..graders import Grader, check_grader_list, grader_from_spec, graders_or_default
from ..grades import grade
from ..judges import judge_from_spec
from ..prompts import PromptFile, Variant, load_prompt, version_of
from ..store import RunLog


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
    if spec and prompt is not None:  # the file checked its shape when it loaded; a judge's values and model now
        build = judge_from_spec if spec.get("kind") == "judge" else grader_from_spec
        return [build(spec, prompt.grader_where)]
    return []


def adhoc_variant(name: str, task: str, system: str | None, params: dict[str, Any]) -> Variant:
    """A Variant for calls that do not come from a prompt file (conversations, critiques)."""
    templates = (("system", system),) if system else ()
    return Variant(name=name, task=task, path=f"<{task}>", templates=templates, params=dict(params),
                   escape_hatch=None, version=version_of(templates, dict(params), None))


def run_and_grade(exp: Experiment, graders: list[Grader]) -> tuple[Runs, list[Grader]]:
    """Run ``exp`` (checked first) and grade its runs with ``graders``, or without any with the
    default grader where the inputs have expected answers. Returns the runs and the graders used."""
    exp.plan()
    runs = exp.run()
    graders = graders_or_default(graders, runs.df)
    if graders:
        grade(runs, graders)
    return runs, graders
