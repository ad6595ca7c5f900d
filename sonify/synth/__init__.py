"""Stage 3a, the synthesizer: a Score becomes a stereo mix (NumPy samples).

Takes a Score (``sonify.music.score``) and the preset's synth settings; gives float32
sample blocks, finished (loudness, limiter) offline — handed block by block to sinks, so a
render's memory does not grow with the piece — or raw for the live audio path.
Never touches the model, files or devices: writing audio is ``sonify.outputs``' job,
playing it live is ``sonify.live``'s.
"""

from .engine import SynthEngine
from .render import render_audio, render_to

__all__ = ["SynthEngine", "render_audio", "render_to"]
