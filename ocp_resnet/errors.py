"""The project's error type: every user mistake raises :class:`ValidationError`.

The message always names the fix, so the CLI can print it as one line (exit code 2).
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any, SupportsInt, TypeGuard


class ValidationError(ValueError):
    """Bad user input (spec, option, data or file). The message says how to fix it."""


def check_choice(name: str, value: object, allowed: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``allowed``; else raise naming the allowed values."""
    allowed = list(allowed)
    if not isinstance(value, str) or value not in allowed:
        raise ValidationError(
            f"unknown {name} {value!r}: use one of {', '.join(map(str, allowed))}"
        )
    return value


def _is_bool(value: object) -> bool:
    return isinstance(value, bool) or type(value).__name__ == "bool_"  # numpy.bool_


def _is_number(value: object) -> TypeGuard[numbers.Real]:
    """A real number (Python or numpy), not a bool."""
    return isinstance(value, numbers.Real) and not _is_bool(value)


def check_int(name: str, value: object, minimum: int = 0) -> int:
    """Return ``value`` as int if it is an integer >= ``minimum`` (2.0 counts, 2.5 does not)."""
    if not _is_number(value) or not (
        isinstance(value, numbers.Integral) or (math.isfinite(float(value)) and float(value).is_integer())
    ):
        raise ValidationError(f"{name} must be an integer >= {minimum}, got {value!r}")
    # every real number type in use has __int__ (numbers.Real does not promise it)
    number = int(value) if isinstance(value, SupportsInt) else int(float(value))
    if number < minimum:
        raise ValidationError(f"{name} must be an integer >= {minimum}, got {number}")
    return number


def check_float(
    name: str,
    value: object,
    minimum: float = 0.0,
    strict: bool = False,
    maximum: float | None = None,
) -> float:
    """Return ``value`` as float if it is finite and >= ``minimum`` (> if ``strict``)."""
    if not _is_number(value) or not math.isfinite(float(value)):
        raise ValidationError(f"{name} must be a finite number, got {value!r}")
    number = float(value)
    if number < minimum or (strict and number == minimum):
        op = ">" if strict else ">="
        raise ValidationError(f"{name} must be {op} {minimum}, got {number}")
    if maximum is not None and number > maximum:
        raise ValidationError(f"{name} must be <= {maximum}, got {number}")
    return number


def check_mapping(name: str, value: object, allowed: Iterable[str]) -> dict[str, Any]:
    """Return ``value`` as a dict if it is a mapping whose keys are all in ``allowed``."""
    from collections.abc import Mapping

    allowed = list(allowed)
    if not isinstance(value, Mapping):
        raise ValidationError(f"{name} must be a mapping with keys {', '.join(allowed)}, got {type(value).__name__}")
    unknown = [k for k in value if k not in allowed]
    if unknown:
        raise ValidationError(
            f"unknown {name} field(s) {', '.join(map(repr, unknown))}: use only {', '.join(allowed)}"
        )
    return dict(value)
