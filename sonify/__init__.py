"""sonify: hear a language model think.

A transformer runs token by token; for every token sonify exposes the entropy of its
next-token distribution, the surprisal of the chosen token and the alternatives it
passed over, how its attention spreads over the context, and its layers' activations.

The package follows the flow, one folder a stage, imports only downstream:
``model`` (text → Frames) → ``music`` (Frames → Score) → ``synth`` and ``outputs``
(Score → samples and files) → ``live`` and ``interlude`` (performances and podcast
pieces) → ``cli``. ``pipeline`` joins the stages for ``render``.
"""

from .errors import SonifyError
from .model.engine import Engine
from .model.frame import AttentionStats, Frame, LayerStats
from .model.loader import LanguageModel, ModelSettings, load_model
from .model.remote import RemoteSettings
from .model.sampling import Generation, SamplerSettings, make_sampler
from .music.mapping import make_score
from .music.preset import Preset, load_preset, preset_names
from .music.score import Score
from .outputs.trace import Trace
from .pipeline import Length, OutputSettings, Rendered, render
from .version import __version__

__all__ = [
    "AttentionStats",
    "Engine",
    "Frame",
    "Generation",
    "LanguageModel",
    "LayerStats",
    "Length",
    "ModelSettings",
    "OutputSettings",
    "Preset",
    "RemoteSettings",
    "Rendered",
    "SamplerSettings",
    "Score",
    "SonifyError",
    "Trace",
    "__version__",
    "load_model",
    "load_preset",
    "make_sampler",
    "make_score",
    "preset_names",
    "render",
]
