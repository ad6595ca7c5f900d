"""The argparse types every command shares: numbers checked for finiteness and range, and
bare file names, in one place.

A type raises ``argparse.ArgumentTypeError`` whose text names the allowed range and the
value given; the parser turns it into one line (``error: --duck: ...``) and exit status 2.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable

SEED_LIMIT = 2**63  # seeds are 0..2**63-1, what NumPy's generators take without wrapping


def _span(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    """``in the (0, 1] interval``, ``>= 0``, ``> 0`` or ``<= 60``: the range in words."""
    if low is not None and high is not None:
        return f"in the {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'} interval"
    if low is not None:
        return f"{'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f"{'<' if high_open else '<='} {high:g}"
    return "finite"


def real(
    label: str | None = None,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    unit: str = "",
    hint: str = "",
) -> Callable[[str], float]:
    """An argparse type: a finite float within the given bounds (``low_open``: ``> low``).

    ``label`` names the quantity in the message (default: the option itself), ``unit`` is the
    values' unit, ``hint`` (e.g. ``0 = off``) follows the range."""
    if low == 0 and low_open and high is None:
        span = f"a positive number{' of ' + unit if unit else ''}"
    else:
        span = f"{_span(low, high, low_open, high_open)}{' (' + unit + ')' if unit else ''}"
    message = f"{label + ' ' if label else ''}has to be {span}{' (' + hint + ')' if hint else ''}, but is "

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(message + repr(text)) from None
        bad = not math.isfinite(value)
        bad = bad or (low is not None and (value <= low if low_open else value < low))
        bad = bad or (high is not None and (value >= high if high_open else value > high))
        if bad:
            raise argparse.ArgumentTypeError(message + text)
        return value

    parse.__name__ = "number"  # argparse names the type in its own messages
    return parse


def integer(label: str | None = None, low: int | None = None, high: int | None = None, *, hint: str = "") -> Callable[[str], int]:
    """An argparse type: an integer in ``low..high`` (either bound may be None)."""
    if low is not None and high is not None:
        span = f"an integer in {low}..{high}"
    elif low is not None:
        span = f"at least {low}"
    else:
        span = f"an integer <= {high}" if high is not None else "an integer"
    message = f"{label + ' ' if label else ''}has to be {span}{' (' + hint + ')' if hint else ''}, but is "

    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(message + repr(text)) from None
        if (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(message + text)
        return value

    parse.__name__ = "integer"
    return parse


def bare_name(text: str) -> str:
    """An argparse type: a file name without a folder (``--name``). A separator, ``.``/``..``,
    an absolute path or a NUL is refused: the files go in ``--out`` and nowhere else."""
    separators = {"/", os.sep, os.altsep or "/"}
    if not text.strip() or "\0" in text:
        raise argparse.ArgumentTypeError(f"has to be a file name, but is {text!r}")
    if text in (".", "..") or os.path.isabs(text) or any(s in text for s in separators):
        raise argparse.ArgumentTypeError(f"has to be a bare file name without a folder, but is {text!r}; put the folder in --out")
    return text


# The options several commands share, so that each range is written down once.
TOKENS = integer(None, 1)
SECONDS = real(None, 0, low_open=True, unit="seconds")
FADE = real(None, 0, 600, unit="seconds")
TEMPERATURE = real("temperature", 0, hint="0 = always the most likely token")
TOP_K = integer("top_k", 0, hint="an integer, 0 = off")
TOP_P = real("top_p", 0, 1, low_open=True)
MIN_P = real("min_p", 0, 1)
REPETITION_PENALTY = real("repetition_penalty", 0, 100, low_open=True, hint="1 = off")
SEED = integer(None, 0, SEED_LIMIT - 1)
WINDOW = integer(None, 8, 1_000_000)
THREADS = integer(None, 1, 1024)
ALTERNATIVES = integer(None, 1, 100)
LUFS = real(None, -40, -6, unit="LUFS")
DUCK = real(None, 0, 60, unit="dB")
WPM = integer(None, 80, 450)
LATENCY = real(None, 0.02, 10, unit="seconds")
BLOCK = integer(None, 16, 8192, hint="audio frames")
MAX_DURATION = real(None, 0, 1e7, low_open=True, unit="seconds")
