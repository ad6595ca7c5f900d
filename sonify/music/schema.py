"""The checks a preset's values pass: each says what it accepts (``allowed``) and raises a
``PresetError`` naming the key path and the allowed values when a value does not fit.

The preset's dataclasses (``preset.py``) attach one check to each field, so validation,
the error messages and ``sonify explain`` all read from one place.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ..errors import SonifyError
from .signals import ALTERNATIVE_SIGNALS, LAYER_SIGNALS, SIGNALS, TRANSFORMS, Scaling


class PresetError(SonifyError):
    """A preset value that is not allowed; ``path`` is its key path."""

    def __init__(self, path: tuple[str, ...], message: str):
        super().__init__(message)
        self.path = path
        self.message = message


Check = Callable[[Any, tuple[str, ...]], Any]
UNIT_SIGNALS = tuple(SIGNALS)
PER_LAYER = tuple(LAYER_SIGNALS)
PER_ALTERNATIVE = tuple(ALTERNATIVE_SIGNALS)


def describe_value(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)


def number(lo: float, hi: float, unit: str = "", integer: bool = False) -> Check:
    def check(value: Any, path: tuple[str, ...]) -> float | int:
        ok = isinstance(value, int) if integer else isinstance(value, int | float)
        if isinstance(value, bool) or not ok:
            raise PresetError(
                path, f"{describe_value(value)} is not {'an integer' if integer else 'a number'}; allowed {lo}..{hi}{unit}"
            )
        if not (math.isfinite(value) and lo <= value <= hi):
            raise PresetError(path, f"{describe_value(value)} is out of range; allowed {lo}..{hi}{unit}")
        return int(value) if integer else float(value)

    check.allowed = f"{lo}..{hi}{unit}"  # type: ignore[attr-defined]
    return check


def integer(lo: int, hi: int, unit: str = "") -> Check:
    return number(lo, hi, unit, integer=True)


def choice(options: tuple[str, ...] | list[str]) -> Check:
    def check(value: Any, path: tuple[str, ...]) -> str:
        if value not in options:
            raise PresetError(path, f"{describe_value(value)} is not allowed; use one of {', '.join(options)}")
        return value

    check.allowed = " | ".join(options)  # type: ignore[attr-defined]
    return check


def boolean(value: Any, path: tuple[str, ...]) -> bool:
    if not isinstance(value, bool):
        raise PresetError(path, f"{describe_value(value)} is not true or false")
    return value


boolean.allowed = "true | false"  # type: ignore[attr-defined]


def text(value: Any, path: tuple[str, ...]) -> str:
    if not isinstance(value, str):
        raise PresetError(path, f"{describe_value(value)} is not a string")
    return value


text.allowed = "text"  # type: ignore[attr-defined]


def pair(item: Check) -> Check:
    def check(value: Any, path: tuple[str, ...]) -> tuple:
        if not isinstance(value, list) or len(value) != 2:
            raise PresetError(path, f"{describe_value(value)} is not a list of two values; allowed [{item.allowed}, {item.allowed}]")  # type: ignore[attr-defined]
        return (item(value[0], path), item(value[1], path))

    check.allowed = f"[{item.allowed}, {item.allowed}]"  # type: ignore[attr-defined]
    return check


def rising_pair(item: Check) -> Check:
    """Two values, the first below the second (a range of pitches, say)."""
    inner = pair(item)

    def check(value: Any, path: tuple[str, ...]) -> tuple:
        lo, hi = inner(value, path)
        if not lo < hi:
            raise PresetError(path, f"{describe_value(value)} does not rise; write the lower value first")
        return (lo, hi)

    check.allowed = inner.allowed  # type: ignore[attr-defined]
    return check


def integers(lo: int, hi: int, most: int = 16) -> Check:
    """A non-empty list of integers in lo..hi."""
    item = integer(lo, hi)

    def check(value: Any, path: tuple[str, ...]) -> tuple[int, ...]:
        if not isinstance(value, list) or not 1 <= len(value) <= most:
            raise PresetError(path, f"{describe_value(value)} is not a list of 1 to {most} integers in {lo}..{hi}")
        return tuple(item(v, path) for v in value)

    check.allowed = f"[{lo}..{hi}, ...]"  # type: ignore[attr-defined]
    return check


def limit(value: Any, path: tuple[str, ...]) -> float | str:
    """A limit: a number in the signal's units, or a percentile of the model's calibration."""
    if isinstance(value, str):
        body = value.strip()
        try:
            q = float(body[:-1]) if body.endswith("%") else math.nan
        except ValueError:
            q = math.nan
        if not 0.0 <= q <= 100.0:
            raise PresetError(path, f'{value!r} is not a percentile; write e.g. "5%" (0% to 100%) or a number')
        return f"{q:g}%"
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PresetError(path, f'{describe_value(value)} is not a limit; write a number or a percentile such as "95%"')
    return float(value)


MAPPING_KEYS = ("signal", "transform", "limits", "range", "curve", "window", "fallback")


def mapping(lo: float, hi: float, unit: str, signals: tuple[str, ...], constant: bool = True) -> Check:
    """A musical parameter: a constant, or a table {signal, transform, limits, range, curve,
    window, fallback}."""
    bound = number(lo, hi, unit)

    def check(value: Any, path: tuple[str, ...]) -> Scaling | float:
        if not isinstance(value, dict):
            if constant:
                return bound(value, path)
            raise PresetError(path, f"{describe_value(value)} is not a table; write {{ signal = ..., range = [...] }}")
        for key in value:
            if key not in MAPPING_KEYS:
                raise PresetError(path + (key,), f"unknown key; allowed keys here: {', '.join(MAPPING_KEYS)}")
        for key in ("signal", "range"):
            if key not in value:
                raise PresetError(path, f"the table has no {key!r}; a mapping needs signal and range")
        signal = choice(signals)(value["signal"], path + ("signal",))
        kind = choice(TRANSFORMS)(value.get("transform", "linear"), path + ("transform",))
        raw = value.get("limits", ["5%", "95%"])
        if not isinstance(raw, list) or len(raw) != 2:
            raise PresetError(path + ("limits",), f'{describe_value(raw)} is not two limits; write e.g. ["5%", "95%"] or [0.0, 8.0]')
        limits = (limit(raw[0], path + ("limits",)), limit(raw[1], path + ("limits",)))
        if kind == "quantile" and any(isinstance(x, float) and not 0.0 <= x <= 1.0 for x in limits):
            raise PresetError(path + ("limits",), 'with transform "quantile" the limits are fractions in 0..1 or percentiles')
        out = pair(bound)(value["range"], path + ("range",))
        curve = number(0.1, 10)(value.get("curve", 1.0), path + ("curve",))
        window = integer(2, 100_000, " words")(value["window"], path + ("window",)) if "window" in value else None
        fallback = None
        if "fallback" in value:
            fallback = choice((*[s for s in signals if s in UNIT_SIGNALS], "rest"))(value["fallback"], path + ("fallback",))
        return Scaling(signal, kind, limits, out, curve, window, fallback)

    check.allowed = f"{lo}..{hi}{unit} or {{ signal, transform, limits, range, curve, window, fallback }}"  # type: ignore[attr-defined]
    return check


def gate(value: Any, path: tuple[str, ...]) -> tuple[str, float | str] | None:
    if value == "none":
        return None
    if not isinstance(value, dict) or set(value) != {"signal", "above"}:
        raise PresetError(path, f'{describe_value(value)} is not a gate; write "none" or {{ signal = "surprisal", above = "80%" }}')
    return (choice(UNIT_SIGNALS)(value["signal"], path + ("signal",)), limit(value["above"], path + ("above",)))


gate.allowed = '"none" or { signal, above }'  # type: ignore[attr-defined]
