"""Stage 1, the model: text in, one Frame per token out.

Takes a checkpoint in Hugging Face layout (or the shipped default model) and a prompt or
a text to read; gives a stream of Frames (``frame.py``): the token, its log-probability,
the entropy of the distribution, the alternatives, attention and layer telemetry. The
loader (``loader``, ``checkpoint``, ``safetensors_io``, ``quantized``, ``tokenizer``),
the model families (``families/``), the NumPy and MLX decoders (``backends/``), the
engine and its samplers (``engine``, ``sampling``, ``telemetry``), and the shipped model
with its training script (``default_model/``, ``train``).

It must never know about music, sound or output files: the Frame is its whole contract.
"""
