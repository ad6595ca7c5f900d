"""One way for every command to get its Frames: from the model in-process, or from a server.

``open_stream`` takes the ``ModelSettings`` (``server`` set: a model behind an inference
server) and what to do (a ``StreamRequest``: generate from a prompt, or read a text) and
gives a ``TokenStream``: the Frames as they come, how many to expect, and the Trace header.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from .frame import Frame
from .loader import ModelSettings
from .sampling import Generation, SamplerSettings


@dataclass(frozen=True)
class StreamRequest:
    """What to run: read ``text`` (when given), else generate up to ``max_tokens`` after
    ``prompt`` with ``generation``'s sampler and seed, stopping at end-of-text if ``stop_at_eos``.
    ``steer`` (live play) is asked for the sampler settings as it generates."""

    prompt: str = ""
    text: str | None = None
    max_tokens: int = 200
    generation: Generation = field(default_factory=Generation)
    stop_at_eos: bool = True
    steer: Callable[[SamplerSettings], SamplerSettings] | None = field(default=None, compare=False)


@dataclass
class TokenStream:
    """Frames as they come; ``total`` how many to expect (``None``: not known beforehand);
    ``header()`` the Trace header (complete once the frames have been read: a server says
    what it is only when it answers); ``describe()`` the model's name and where it ran."""

    frames: Iterator[Frame]
    total: int | None
    header: Callable[[], dict]
    describe: Callable[[], tuple[str, str]]
    model: object | None = None  # the LanguageModel running in this process (None: a server)


def open_stream(settings: ModelSettings, request: StreamRequest) -> TokenStream:
    """The Frames of ``request`` run by the model ``settings`` name."""
    if settings.server is not None:
        return _remote(settings, request)
    from .engine import Engine

    model = settings.load()
    engine = Engine(model, alternatives=settings.alternatives)

    def describe() -> tuple[str, str]:
        return model.name, model.backend

    if request.text is not None:
        header = engine.header("read", text=request.text)
        ids = model.tokenizer.encode(request.text)
        return TokenStream(engine.read_ids(ids), len(ids), lambda: header, describe, model)
    gen = request.generation
    header = engine.header(
        "generate", prompt=request.prompt, sampler=gen.sampler.to_dict(), seed=gen.seed, max_tokens=request.max_tokens
    )
    ids = model.tokenizer.encode(request.prompt) if request.prompt else []
    frames = engine.generate(
        ids, max_tokens=request.max_tokens, sampler=gen.sampler, seed=gen.seed, stop_at_eos=request.stop_at_eos, steer=request.steer
    )
    return TokenStream(frames, len(ids) + request.max_tokens, lambda: header, describe, model)


def _remote(settings: ModelSettings, request: StreamRequest) -> TokenStream:
    source = settings.server.open()

    def describe() -> tuple[str, str]:
        return source.name, f"server {settings.server.url}"

    if request.text is not None:
        return TokenStream(source.read(request.text), None, lambda: source.header("read", text=request.text), describe)
    gen = request.generation
    frames = source.generate(
        request.prompt, max_tokens=request.max_tokens, sampler=gen.sampler, seed=gen.seed, stop_at_eos=request.stop_at_eos,
        steer=request.steer,
    )
    return TokenStream(
        frames,
        request.max_tokens,
        lambda: source.header(
            "generate", prompt=request.prompt, sampler=gen.sampler.to_dict(), seed=gen.seed, max_tokens=request.max_tokens
        ),
        describe,
    )
