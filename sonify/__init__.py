"""sonify: hear a language model think.

A transformer runs token by token; for every token sonify exposes the entropy of its
next-token distribution, the surprisal of the chosen token and the alternatives it
passed over, how its attention spreads over the context, and its layers' activations.
"""

__version__ = "0.1.0"

from .engine import Engine  # noqa: E402
from .errors import SonifyError  # noqa: E402
from .frame import AttentionStats, Frame, LayerStats  # noqa: E402
from .mapping import make_score  # noqa: E402
from .model import LanguageModel, load_model  # noqa: E402
from .pipeline import Rendered, render  # noqa: E402
from .preset import Preset, load_preset, preset_names  # noqa: E402
from .sampling import SamplerSettings, make_sampler  # noqa: E402
from .score import Score  # noqa: E402
from .trace import Trace  # noqa: E402

__all__ = [
    "AttentionStats",
    "Engine",
    "Frame",
    "LanguageModel",
    "LayerStats",
    "Preset",
    "Rendered",
    "SamplerSettings",
    "Score",
    "SonifyError",
    "Trace",
    "load_model",
    "load_preset",
    "make_sampler",
    "make_score",
    "preset_names",
    "render",
]
