"""A model behind an inference server (vLLM, llama.cpp's server, mlx_lm.server or any
OpenAI-compatible completions endpoint), as a stream of Frames.

The server gives each token's log-probability and its top alternatives; the entropy is
estimated from those with stated bounds (``estimate``); attention, layers and the
embedding are absent and the Frames say so (``Frame.absent``). ``http`` talks to the
server, ``responses`` reads its answers whatever their shape, ``align`` finds the chosen
tokens in the text where the server does not name them, ``source`` runs it all.
"""

from .source import NoReading, RemoteSettings, RemoteSource, ServerLost

__all__ = ["NoReading", "RemoteSettings", "RemoteSource", "ServerLost"]
