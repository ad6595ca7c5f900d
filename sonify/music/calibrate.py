"""Measuring a model's calibration: its telemetry per word, reading and generating.

``measure(modes, ...)`` takes, per mode, the frames of the model reading
``reference_text()`` and of it generating from ``reference_prompt()``, and returns the
Calibration (percentiles of every signal per word). Running the model is the caller's part
(``sonify calibrate``, or the pipeline on first use of a model).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..model.frame import Frame
from .calibration import (
    GENERATED_TOKENS,
    Calibration,
    Measured,
    Tables,
    reference_digest,
    reference_prompt,
    reference_text,
)
from .signals import ALTERNATIVE_SIGNALS, LAYER_SIGNALS, SIGNALS, alternatives, unit_layer_signal, unit_signal
from .units import Unit, segment

ALTERNATIVES = 8  # alternatives per word that enter the calibration


def word_measurements(frames: Sequence[Frame], mode: str | None = None) -> list[Measured]:
    """Per word of ``frames`` (of ``mode`` only, if given): its signals, its layer signals and
    its alternatives' signals."""
    out = []
    for event in segment([f.text for f in frames]):
        if not isinstance(event, Unit) or not event.is_word:
            continue
        own = [frames[i] for i in event.tokens]
        if mode is not None and own[0].mode != mode:
            continue
        signals = {name: unit_signal(own, name) for name in SIGNALS}
        layers = {name: unit_layer_signal(own, name) for name in LAYER_SIGNALS}
        alts = [{name: a.signal(name) for name in ALTERNATIVE_SIGNALS} for a in alternatives(own[0], ALTERNATIVES)]
        out.append((signals, layers, alts))
    return out


def measure(runs: dict[str, Sequence[Frame]], model: str, model_sha256: str) -> Calibration:
    """The calibration of a model from its runs over the reference: ``{"read": frames of it
    reading reference_text(), "generated": frames of it generating from reference_prompt()}``
    (either may be missing)."""
    modes = {mode: Tables.measure(word_measurements(frames, mode)) for mode, frames in runs.items() if frames}
    return Calibration(model, model_sha256, reference_digest(), modes)


__all__ = ["ALTERNATIVES", "GENERATED_TOKENS", "measure", "reference_prompt", "reference_text", "word_measurements"]
