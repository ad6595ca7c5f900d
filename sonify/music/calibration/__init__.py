"""A model's calibration: how its telemetry is distributed, measured once over a reference text.

Presets write their limits as percentiles (``"5%"``, ``"95%"``); these are read here, from
the model's own distribution of each signal, per word. The distribution differs with what
the model does: reading a given text it is surprised far more often than when it chooses
its own words (sampling picks likely tokens), so there are two tables, measured once each
over the reference text shipped in this folder (``reference.txt``, about 1,200 words of
prose, dialogue, verse and a list): the model **reading** it, and the model **generating**
from its opening lines with the default sampler. A word takes the table of its mode. So
the limits are fixed numbers in the signal's units for a given model and mode: the same
telemetry gives the same musical value in every piece, and a large model whose surprisal
runs lower than ours still spans the preset's ranges.

A calibration is a plain JSON document (``to_dict``); the shipped model carries its own in
its folder, others are made by ``sonify calibrate`` (or on first use) and kept beside the
model or in the user's cache; a trace carries the one it was made with in its header, so a
re-render uses it again.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

FORMAT = "sonify-calibration"
VERSION = 2
PERCENTILES = np.arange(101, dtype=np.float64)  # every whole percentile, 0..100
MODES = ("read", "generated")
GENERATED_TOKENS = 1500  # how much the model writes for the generation table
SPAN_WORDS = 6  # the harmony reads means over spans of about this many words (a bar)
PROMPT_LINES = 3  # of the reference text, as the prompt for it

Table = tuple[float, ...]
Measured = tuple[dict[str, float], dict[str, np.ndarray], list[dict[str, float]]]


def reference_text() -> str:
    """The text every model is calibrated on."""
    return (importlib.resources.files(__package__) / "reference.txt").read_text(encoding="utf-8")


def reference_prompt() -> str:
    """The prompt the generation table is measured from: the reference text's opening."""
    return "".join(reference_text().splitlines(keepends=True)[:PROMPT_LINES])


def reference_digest() -> str:
    return hashlib.sha256(reference_text().encode("utf-8")).hexdigest()[:16]


def _table(values: Iterable[float]) -> Table:
    x = np.array([v for v in values if math.isfinite(v)], dtype=np.float64)
    if x.size == 0:
        return tuple(0.0 for _ in PERCENTILES)
    return tuple(float(v) for v in np.percentile(x, PERCENTILES))


@dataclass(frozen=True)
class Tables:
    """Percentiles 0..100 per word of each signal (``signals``), of each layer signal, one
    table per layer (``layers``), and of the alternatives' signals, for one mode; and of
    each signal's mean over ``SPAN_WORDS`` consecutive words (``spans``: what a chord, which
    follows the words of a bar, reads)."""

    words: int
    signals: dict[str, Table]
    layers: dict[str, tuple[Table, ...]]
    alternatives: dict[str, Table]
    spans: dict[str, Table] = field(default_factory=dict)

    def table(self, signal: str, layer: int | None, span: bool = False) -> Table:
        if span and signal in self.spans:
            return self.spans[signal]
        if signal in self.alternatives:
            return self.alternatives[signal]
        if signal in self.layers:
            tables = self.layers[signal]
            if not tables:
                return tuple(0.0 for _ in PERCENTILES)
            return tables[min(layer or 0, len(tables) - 1)]
        return self.signals[signal]

    @classmethod
    def measure(cls, words: Sequence[Measured]) -> Tables:
        names = sorted({k for s, _, _ in words for k in s})
        signals = {name: _table(s[name] for s, _, _ in words if name in s) for name in names}
        layers = {}
        for name in sorted({k for _, layer, _ in words for k in layer}):
            rows = [layer[name] for _, layer, _ in words if name in layer and len(layer[name])]
            width = max((len(r) for r in rows), default=0)
            layers[name] = tuple(_table(r[j] for r in rows if len(r) > j) for j in range(width))
        alt_names = sorted({k for _, _, alts in words for a in alts for k in a})
        alternatives = {name: _table(a[name] for _, _, alts in words for a in alts if name in a) for name in alt_names}
        spans = {}
        for name in names:
            x = np.array([s.get(name, math.nan) for s, _, _ in words], dtype=np.float64)
            windows = [x[i : i + SPAN_WORDS] for i in range(max(len(x) - SPAN_WORDS + 1, 0))]
            spans[name] = _table(float(np.nanmean(w)) for w in windows if np.isfinite(w).any())
        return cls(len(words), signals, layers, alternatives, spans)

    def to_dict(self) -> dict[str, Any]:
        return {
            "words": self.words,
            "signals": {k: [round(v, 6) for v in t] for k, t in self.signals.items()},
            "layers": {k: [[round(v, 6) for v in t] for t in ts] for k, ts in self.layers.items()},
            "alternatives": {k: [round(v, 6) for v in t] for k, t in self.alternatives.items()},
            "spans": {k: [round(v, 6) for v in t] for k, t in self.spans.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str) -> Tables:
        def table(values: Any, name: str) -> Table:
            if not isinstance(values, list) or len(values) != len(PERCENTILES):
                raise ValueError(f"calibration {where}.{name} is not a list of {len(PERCENTILES)} percentiles")
            out = tuple(float(v) for v in values)
            if any(not math.isfinite(v) for v in out) or any(b < a for a, b in zip(out, out[1:])):
                raise ValueError(f"calibration {where}.{name} is not a finite, rising list")
            return out

        return cls(
            words=int(d["words"]),
            signals={k: table(v, k) for k, v in d["signals"].items()},
            layers={k: tuple(table(t, f"{k}[{j}]") for j, t in enumerate(v)) for k, v in d["layers"].items()},
            alternatives={k: table(v, k) for k, v in d["alternatives"].items()},
            spans={k: table(v, f"spans.{k}") for k, v in d.get("spans", {}).items()},
        )


@dataclass(frozen=True)
class Calibration:
    """A model's percentile tables per mode ("read", "generated"); see the module."""

    model: str
    model_sha256: str
    reference: str
    modes: dict[str, Tables]

    @property
    def words(self) -> int:
        return sum(t.words for t in self.modes.values())

    def tables(self, mode: str) -> Tables:
        """The tables of ``mode``, or of the other mode where this one was not measured."""
        return self.modes.get(mode) or next(iter(self.modes.values()))

    def percentile(self, signal: str, q: float, layer: int | None = None, mode: str = "read", span: bool = False) -> float:
        """The value below which ``q`` percent of the model's words lie (in ``mode``; for a
        layer signal: of that layer; ``span``: of its means over spans of words)."""
        return float(np.interp(q, PERCENTILES, self.tables(mode).table(signal, layer, span)))

    def cdf(self, signal: str, value: float, layer: int | None = None, mode: str = "read", span: bool = False) -> float:
        """The share (0..1) of the model's words (in ``mode``) whose signal lies below ``value``."""
        table = np.asarray(self.tables(mode).table(signal, layer, span))
        if table[-1] <= table[0]:
            return 0.5
        lo = np.searchsorted(table, value, side="left")
        hi = np.searchsorted(table, value, side="right")
        if lo == hi:
            return float(np.interp(value, table, PERCENTILES)) / 100.0
        return float((lo + hi - 1) / 2.0) / 100.0  # a flat run of the table (ties): its middle

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "model": self.model,
            "model_sha256": self.model_sha256,
            "reference": self.reference,
            "percentiles": "0..100",
            "modes": {mode: tables.to_dict() for mode, tables in self.modes.items()},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        """Read a calibration document; ``ValueError`` names what is wrong with it."""
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ValueError("not a sonify calibration (its format field is missing or wrong)")
        if d.get("version") != VERSION:
            raise ValueError(f"calibration version {d.get('version')} is not supported (this sonify reads {VERSION})")
        try:
            modes = {mode: Tables.from_dict(t, mode) for mode, t in d["modes"].items() if mode in MODES}
            if not modes:
                raise ValueError("calibration has no tables")
            return cls(str(d["model"]), str(d["model_sha256"]), str(d["reference"]), modes)
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"calibration is missing or mangles {exc}") from None


_SHIPPED: list[Calibration] = []


def shipped_calibration() -> Calibration:
    """The shipped model's calibration (``sonify/model/default_model/calibration.json``):
    the default where no other is given."""
    if not _SHIPPED:
        path = importlib.resources.files("sonify.model") / "default_model" / "calibration.json"
        _SHIPPED.append(Calibration.from_dict(json.loads(path.read_text(encoding="utf-8"))))
    return _SHIPPED[0]
