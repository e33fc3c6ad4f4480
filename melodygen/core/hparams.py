"""Hyperparameters as data: ``name=value`` overrides, typed and bounds-checked.

Every family keeps its hyperparameters in a dataclass with bounds; these helpers read
``--hparams a=1,b=[128,128],c=0.5`` into it and refuse a bad value with one
``ConfigError`` line that names the field (a hostile model file may hold anything).
"""

from __future__ import annotations

import dataclasses
import math

from melodygen.errors import ConfigError


def parse_overrides(text: str) -> dict[str, str]:
    """Split ``a=1,b=[128,128],c=0.5`` on commas that are outside brackets."""
    items, depth, current = [], 0, ""
    for char in text:
        if char in "[(":
            depth += 1
        elif char in "])":
            depth -= 1
        if char == "," and depth == 0:
            items.append(current)
            current = ""
        else:
            current += char
    items.append(current)
    overrides = {}
    for item in filter(None, (i.strip() for i in items)):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError(f"bad hyperparameter override {item!r}: write it as name=value")
        overrides[key.strip()] = value.strip()
    return overrides


def coerce(key: str, raw, current):
    """Turn an override into the type of the field it replaces."""
    try:
        if not isinstance(raw, str):
            if isinstance(current, tuple):
                return tuple(raw) if isinstance(raw, list | tuple) else raw
            return raw  # validate() checks its type and range
        if isinstance(current, tuple):
            parts = [p for p in raw.strip("[]() ").replace(";", ",").split(",") if p.strip()]
            return tuple(int(p) for p in parts)
        if isinstance(current, str):
            return raw
        if isinstance(current, int):
            return int(raw)
        return float(raw)
    except (ValueError, OverflowError):
        kind = (
            "a list of integers like [128,128]"
            if isinstance(current, tuple)
            else type(current).__name__
        )
        raise ConfigError(f"hyperparameter {key}={shown(raw)} is not {kind}") from None


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def shown(value: object) -> str:
    """A value as a message shows it: repr, cut short (a hostile file may hold megabytes)."""
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**40 else "a huge integer"
    return text if len(text) <= 40 else text[:37] + "..."


def check_int(name: str, value: object, low: int, high: int, note: str = "") -> None:
    if not is_int(value) or not low <= value <= high:
        note = f" {note}" if note else ""
        raise ConfigError(
            f"{name} must be an integer from {low} to {high}{note}, not {shown(value)}"
        )


def check_number(name: str, value: object, low: float, high: float, what: str = "") -> None:
    """A finite number in (low, high]: NaN compares false with everything and would slip by."""
    number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
    if number is None or not math.isfinite(number) or not low < number <= high:
        what = what or f"a positive number up to {high:g}"
        raise ConfigError(f"{name} must be {what}, not {shown(value)}")


def override(hparams, overrides: str | dict | None):
    """A copy of the hyperparameter dataclass ``hparams`` with ``k=v,k=v`` (or a dict)
    applied, each value turned into its field's type, then checked whole (``validate()``)."""
    if not overrides:
        return hparams
    if isinstance(overrides, str):
        overrides = parse_overrides(overrides)
    if not isinstance(overrides, dict):
        raise ConfigError("hyperparameter overrides must be name=value pairs")
    fields = {f.name for f in dataclasses.fields(hparams)}
    values = {}
    for key, raw in overrides.items():
        if key not in fields:
            raise ConfigError(
                f"unknown hyperparameter {shown(key)}; known: {', '.join(sorted(fields))}"
            )
        values[key] = coerce(key, raw, getattr(hparams, key))
    updated = dataclasses.replace(hparams, **values)
    updated.validate()
    return updated


def check_layer_sizes(
    name: str, sizes: object, most_layers: int, largest: int, example: str
) -> None:
    """1 to ``most_layers`` integer sizes from 1 to ``largest``, as a tuple."""
    if (
        not isinstance(sizes, tuple)
        or not 1 <= len(sizes) <= most_layers
        or not all(is_int(size) and 1 <= size <= largest for size in sizes)
    ):
        raise ConfigError(
            f"{name} must be 1 to {most_layers} layer sizes from 1 to {largest}, "
            f"e.g. {example}, not {shown(list(sizes) if isinstance(sizes, tuple) else sizes)}"
        )
