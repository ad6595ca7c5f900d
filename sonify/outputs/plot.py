"""The plot: a trace's telemetry over time, the notes it became, and the words along the axis."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import SonifyError
from ..model.frame import Frame
from ..music.score import Score
from ..music.signals import finite, token_layer_signal, token_signal
from .files import atomic_write
from .transcript import words

VOICE_COLOURS = {"melody": "#1f77b4", "ghosts": "#9467bd", "harmony": "#2ca02c", "layers": "#ff7f0e", "drone": "#8c564b"}
MAX_LABELS = 60


def _heat(ax, values: np.ndarray, edges: np.ndarray, label: str) -> None:
    """Per layer (rows, layer 1 at the bottom) over token time spans (columns)."""
    ax.pcolormesh(edges, np.arange(values.shape[1] + 1), values.T, shading="flat", cmap="magma")
    ax.set_ylabel(label)


def plot_png(frames: Sequence[Frame], score: Score, title: str = "") -> bytes:
    """The plot as PNG bytes."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.collections import PolyCollection
        from matplotlib.figure import Figure
    except ImportError:
        raise SonifyError("the plot needs matplotlib: pip install 'sonify[plot]' (or pip install matplotlib)") from None
    frames = list(frames)
    cues = sorted(score.cues, key=lambda c: c.token)
    starts = np.maximum.accumulate(np.array([c.time for c in cues])) if cues else np.zeros(0)
    ends = np.array([c.time + c.duration for c in cues])
    edges = np.concatenate([starts, ends[-1:]]) if len(starts) else np.array([0.0, 1.0])
    width = min(40.0, 8.0 + score.end / 6.0)
    fig = Figure(figsize=(width, 11), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(4, 1, sharex=True, height_ratios=[1.2, 1, 1, 2])
    ax = axes[0]
    if frames:
        ax.step(starts, finite(token_signal(frames, "surprisal")), where="post", label="surprisal (nats)", color="#d62728")
        ax.step(starts, finite(token_signal(frames, "entropy")), where="post", label="entropy (nats)", color="#1f77b4")
        ax.legend(loc="upper right")
        _heat(axes[1], finite(token_layer_signal(frames, "layer_attention_entropy")), edges, "attention\nspread by layer")
        updates = finite(token_layer_signal(frames, "layer_update"))
        _heat(
            axes[2], updates / np.maximum(updates.max(axis=0, keepdims=True), 1e-12), edges, "layer updates\n(each layer's max = 1)"
        )
    ax.set_title(title)
    roll = axes[3]
    for voice in score.voices:
        notes = score.notes_of(voice.name)
        if notes:
            boxes = [
                [
                    (n.time, n.pitch - 0.4),
                    (n.time + n.duration, n.pitch - 0.4),
                    (n.time + n.duration, n.pitch + 0.4),
                    (n.time, n.pitch + 0.4),
                ]
                for n in notes
            ]
            roll.add_collection(
                PolyCollection(boxes, facecolors=VOICE_COLOURS.get(voice.name, "grey"), alpha=0.8, label=voice.name)
            )
    roll.set_ylabel("pitch (MIDI)")
    pitches = [n.pitch for n in score.notes]
    if pitches:
        roll.set_ylim(min(pitches) - 2, max(pitches) + 2)
        roll.legend(loc="upper right")
    ws = [w for w in words(score) if w.kind == "word"]  # runs of art would be long, unreadable labels
    step = max(1, len(ws) // MAX_LABELS)
    roll.set_xticks([w.start for w in ws[::step]], [w.text for w in ws[::step]], rotation=60, ha="right", fontsize=8)
    roll.set_xlim(0, score.end)
    roll.set_xlabel("time (s)")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def write_plot(path: str | os.PathLike, frames: Sequence[Frame], score: Score, title: str = "") -> Path:
    """Write the plot as a PNG, atomically."""
    path = Path(path)
    data = plot_png(frames, score, title)
    with atomic_write(path, "wb") as f:
        f.write(data)
    return path
