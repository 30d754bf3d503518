"""Range checks that a config section runs on itself at construction (``__post_init__``), in the
style of Megatron-core's ``TransformerConfig``. Each raises ``UserError`` naming the field; the
loader prefixes the section (``optimizer.lr must be above 0, got -1.0``)."""

from __future__ import annotations

from typing import Any

from megacpt.errors import UserError


def at_least(section: Any, low: float, *names: str) -> None:
    """Each of ``names`` (a field of ``section``), where set, is at least ``low``."""
    for name in names:
        value = getattr(section, name)
        if value is not None and value < low:
            raise UserError(f"{name} must be at least {low}, got {value}")


def above(section: Any, low: float, *names: str) -> None:
    """Each of ``names``, where set, is strictly above ``low``."""
    for name in names:
        value = getattr(section, name)
        if value is not None and not value > low:
            raise UserError(f"{name} must be above {low}, got {value}")


def below(section: Any, high: float, *names: str) -> None:
    """Each of ``names``, where set, is strictly below ``high``."""
    for name in names:
        value = getattr(section, name)
        if value is not None and not value < high:
            raise UserError(f"{name} must be below {high}, got {value}")


def exclusive(section: Any, *names: str) -> None:
    """At most one of ``names`` is set (not None, not empty): settings that exclude each other."""
    given = [name for name in names if getattr(section, name) not in (None, [], (), "")]
    if len(given) > 1:
        raise UserError(f"{given[0]} excludes {', '.join(given[1:])}, which is also set: set only one")


def not_above(section: Any, low_name: str, high_name: str) -> None:
    """``low_name`` is not above ``high_name`` where both are set: a final LR above its peak."""
    low, high = getattr(section, low_name), getattr(section, high_name)
    if low is not None and high is not None and low > high:
        raise UserError(f"{low_name} ({low}) must not be above {high_name} ({high})")
