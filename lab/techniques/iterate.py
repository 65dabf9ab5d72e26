"""One step of the everyday loop: edit a variant, run the new version against a baseline.

An input set with a split runs on its dev part (the held-out part is for :func:`lab.confirm`).
Every step is a new prompt version on the same inputs, so the log counts the search, and from
the third version on the step's findings say that its winner was chosen on these inputs.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Unpack

from ..config import RunConfig, RunOptions
from ..errors import ParameterError, PromptFileError
from ..graders import Grader
from ..inputs import InputSet
from ..prompts import PromptFile, Variant, check_template, version_of
from ..store import RunLog
from ._common import as_prompt
from .framing import Comparison, compare_framings


def edited(variant: Variant, *, system: str | None = None, user: str | None = None) -> Variant:
    """``variant`` with its system and/or user template replaced, under its new version."""
    current = dict(variant.templates)
    current.update({r: t for r, t in (("system", system), ("user", user)) if t is not None})
    new = tuple((r, current[r]) for r in ("system", "user") if current.get(r))
    if not any(r == "user" for r, _ in new):
        raise PromptFileError(f"{variant.path}: variant {variant.name!r} needs a user template")
    needed: set[str] = set()
    for role, src in new:
        needed |= check_template(src, f"{variant.path}: variant {variant.name!r} {role} template")
    return dataclasses.replace(variant, templates=new, version=version_of(new, variant.params, variant.escape_hatch),
                               variables=frozenset(needed))


def try_version(prompt: str | Path | PromptFile, inputs: str | Path | InputSet | list[dict], variant: str,
                baseline: str, *, system: str | None = None, user: str | None = None,
                grader: Grader | list[Grader] | None = None, log: RunLog | str | Path | None = None,
                config: RunConfig | None = None, **run: Unpack[RunOptions]) -> Comparison:
    """Run ``variant`` (with ``system`` / ``user`` replacing its templates, when given) against
    ``baseline`` on the inputs (their dev part when the set is split), paired and graded as
    :func:`lab.compare_framings` (the same run options: ``config`` and/or keywords). Returns the
    :class:`Comparison`; its findings carry the selection clause once several versions of
    ``variant`` were tried on these inputs."""
    pf = as_prompt(prompt)
    if variant == baseline:
        raise ParameterError(f"variant and baseline are both {variant!r}; name the variant you edit and another")
    new = edited(pf.variant(variant), system=system, user=user)
    chosen = dataclasses.replace(pf, variants={variant: new, baseline: pf.variant(baseline)})
    return compare_framings(chosen, inputs, variants=[variant, baseline], grader=grader, log=log, config=config,
                            **run)
