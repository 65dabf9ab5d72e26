"""Checks of the values a user gives, written once: a whole number with a floor, an amount of money.

Every option that takes a count (``repeats``, ``concurrency``, ``n``, ``rounds``, a judge's
``repeats``, ...) is checked by :func:`check_int`, so each says the same thing when it is wrong.
"""

from __future__ import annotations

import math
from typing import Any

from .errors import ParameterError


def check_int(name: str, value: Any, minimum: int = 1, *, error: type[Exception] = ParameterError) -> int:
    """``value`` as an int when it is a whole number >= ``minimum`` (``3`` or ``3.0``: papermill and
    the CLI can hand over floats; never ``True``), else ``error`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and (
            math.isnan(value) or not value.is_integer())):
        raise error(f"{name} must be an integer >= {minimum}, got {value!r}")
    if int(value) < minimum:
        raise error(f"{name} must be >= {minimum}, got {value!r}")
    return int(value)


def check_usd(name: str, value: Any) -> float:
    """A non-negative amount of US dollars."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value) or value < 0:
        raise ParameterError(f"{name} must be a non-negative number of US dollars, got {value!r}")
    return value
