"""sonify's own synthesizer: a Score becomes a finished stereo mix."""

from .engine import SynthEngine
from .render import render_audio, write_audio

__all__ = ["SynthEngine", "render_audio", "write_audio"]
