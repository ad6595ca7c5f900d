"""Engine speed: sonify (full telemetry) against Hugging Face transformers and mlx-lm.

    python benchmarks/bench_engine.py [--tokens 64] [--models gpt2-124m,smollm-135m,default] [--mlx] [--verbose]

For each model shape, the same weights run in both, one after the other, each in its own
process (so peak memory is per contender): batch 1, KV cache, float32, greedy decoding,
the best of three timed runs (64 tokens; 200 for the small default model).
transformers runs eager attention with ``output_attentions=True, output_hidden_states=True``
(what it needs to expose what sonify reports); sonify runs ``Engine.generate`` and builds
every Frame. The 124M shape is bound by memory traffic, so the machine's bound is printed
too: weight bytes read per token over the measured matrix-vector bandwidth (the faster
of one BLAS thread and all of them; sonify's decoding steps share their large products
between two threads in fixed blocks, each one single-threaded BLAS call). Peak memory
(MB of 2**20 bytes) is printed beside the weights' size: the weights are held once.

With ``--verbose`` each sonify row is followed by a per-phase profile of one more
generation (milliseconds per generated token; the matrix products with the bandwidth
they streamed at): where the time goes.

With ``--mlx`` it also runs sonify's MLX backend against mlx-lm (which computes no
telemetry) on the same folder and prints that ratio; on Apple Silicon the goal is 0.8x,
on Linux CPU (MLX's reference BLAS) the figure is only reported.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

SHAPES = {
    "gpt2-124m": ("gpt2", dict(n_embd=768, n_layer=12, n_head=12, n_positions=1024, vocab_size=50257)),
    "smollm-135m": (
        "llama",
        dict(
            hidden_size=576,
            intermediate_size=1536,
            num_hidden_layers=30,
            num_attention_heads=9,
            num_key_value_heads=3,
            head_dim=64,
            max_position_embeddings=2048,
            vocab_size=49152,
            tie_word_embeddings=True,
            rope_theta=10000.0,
        ),
    ),
}
PROMPT_IDS = [11, 40, 7, 200, 31, 5, 90, 150]
REPEATS = 3  # every timing is the best of this many runs: the machine is shared and noisy
TOKENS_FOR_DEFAULT = 200  # the small model runs hundreds of tokens a second: time more of them


def best_time(run) -> float:
    best = float("inf")
    for _ in range(REPEATS):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def build_shape(name: str, folder: Path) -> Path:
    import checkpoints
    import torch
    import transformers as tf

    kind, params = SHAPES[name]
    torch.manual_seed(0)
    if kind == "gpt2":
        model = tf.GPT2LMHeadModel(tf.GPT2Config(bos_token_id=0, eos_token_id=0, **params))
    else:
        model = tf.LlamaForCausalLM(tf.LlamaConfig(bos_token_id=0, eos_token_id=0, **params))
    model.save_pretrained(folder, safe_serialization=True)
    checkpoints.build_tokenizer(folder)
    if kind == "gpt2":  # the hub's original key layout, the only one mlx-lm's GPT-2 reads
        from safetensors.numpy import load_file, save_file

        tensors = load_file(folder / "model.safetensors")
        stripped = {k.removeprefix("transformer."): v for k, v in tensors.items() if k != "lm_head.weight"}
        save_file(stripped, str(folder / "model.safetensors"), metadata={"format": "pt"})
    # mlx-lm reads GPT-2's context from n_ctx and RoPE's theta from the top level only;
    # transformers 5 writes neither. Add them (sonify reads n_positions / rope_parameters).
    config = json.loads((folder / "config.json").read_text())
    config.setdefault("n_ctx", config.get("n_positions"))
    if "rope_parameters" in config:
        config.setdefault("rope_theta", config["rope_parameters"]["rope_theta"])
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    return folder


def peak_rss_mb() -> float:
    """Peak resident memory in MB of 2**20 bytes (the unit of the weights' column too)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker_sonify(folder: str, tokens: int, backend: str = "numpy", profile: bool = False) -> dict:
    from sonify import Engine, SamplerSettings, load_model

    model = load_model(folder, backend=backend)
    engine = Engine(model)
    greedy = SamplerSettings(temperature=0)
    list(engine.generate("", max_tokens=4, sampler=greedy, stop_at_eos=False))  # warm up

    def run() -> None:
        frames = list(engine.generate(PROMPT_IDS, max_tokens=tokens, sampler=greedy, stop_at_eos=False))
        assert len(frames) == len(PROMPT_IDS) + tokens

    elapsed = best_time(run)
    result = {"tokens_per_s": tokens / elapsed, "peak_rss_mb": peak_rss_mb(), "weight_bytes": model.decoder.weights.nbytes()}
    if profile and backend == "numpy":
        result["profile"] = phase_profile(engine, tokens)
    return result


# Phases that are one matrix product per layer (or the head), with the weights they read.
MATRIX_PHASES = {"qkv": ("qkv",), "out proj": ("out",), "mlp up": ("up",), "mlp down": ("down",), "mlp": ("up", "down"), "head": ()}


def phase_profile(engine, tokens: int) -> dict:
    """Seconds per generated token in each phase of one more greedy generation, and the
    bytes each matrix phase reads per token."""
    from sonify import SamplerSettings
    from sonify.model.profile import PhaseClock, no_clock

    decoder = engine.model.decoder
    clock = decoder.clock = PhaseClock()
    frames = engine.generate(PROMPT_IDS, max_tokens=tokens, sampler=SamplerSettings(temperature=0), stop_at_eos=False)
    for i, _ in enumerate(frames):
        if i == len(PROMPT_IDS) - 1:  # the prompt is read: count from here
            clock.seconds.clear()
            clock.restart()
    decoder.clock = no_clock
    weights = decoder.weights
    read = {
        phase: sum(getattr(layer, name).nbytes for layer in weights.layers for name in names)
        for phase, names in MATRIX_PHASES.items()
    }
    read["head"] = weights.lm_head.nbytes
    return {"seconds": {k: v / tokens for k, v in clock.seconds.items()}, "bytes": read}


def print_profile(profile: dict, bandwidth: float) -> None:
    seconds, read = profile["seconds"], profile["bytes"]
    total = sum(seconds.values())
    print(f"    {'phase':14s} {'ms/token':>9s} {'share':>6s}  matrix GB/s (of the bound's {bandwidth:.1f})")
    for phase, t in sorted(seconds.items(), key=lambda kv: -kv[1]):
        rate = f"{read[phase] / t / 1e9:9.1f}" if phase in read and t > 0 else ""
        print(f"    {phase:14s} {t * 1e3:9.3f} {t / total:6.1%} {rate}")
    print(f"    {'total':14s} {total * 1e3:9.3f}", flush=True)


def worker_transformers(folder: str, tokens: int) -> dict:
    import torch
    import transformers as tf

    model = tf.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager").eval()

    def run(n: int) -> None:
        ids = torch.tensor([[0, *PROMPT_IDS]])
        out = model(ids, use_cache=True, output_attentions=True, output_hidden_states=True)
        for _ in range(n):
            nxt = out.logits[0, -1].argmax().view(1, 1)
            out = model(nxt, past_key_values=out.past_key_values, use_cache=True, output_attentions=True, output_hidden_states=True)

    with torch.inference_mode():
        run(4)  # warm up
        elapsed = best_time(lambda: run(tokens))
    return {"tokens_per_s": tokens / elapsed, "peak_rss_mb": peak_rss_mb()}


def worker_mlx_lm(folder: str, tokens: int) -> dict:
    import mlx.core as mx
    from mlx_lm import load
    from mlx_lm.generate import generate_step

    model, _ = load(folder)
    prompt = mx.array([0, *PROMPT_IDS])

    def run(n: int) -> None:
        for _, _ in zip(range(n), generate_step(prompt, model, sampler=lambda lp: mx.argmax(lp, axis=-1))):
            pass

    run(4)  # warm up
    elapsed = best_time(lambda: run(tokens))
    return {"tokens_per_s": tokens / elapsed, "peak_rss_mb": peak_rss_mb()}


def gemv_bandwidth_gbps(megabytes: int = 512, repeats: int = 20) -> dict:
    """Bytes per second a float32 matrix-vector product streams through (the decode
    pattern), on one BLAS thread and on all of them: the bound takes the faster."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    from sonify.model.engine import blas_info

    rows = megabytes * 1024 * 1024 // 4 // 4096
    w = np.random.default_rng(0).standard_normal((rows, 4096), dtype=np.float32)
    x = np.ones(rows, dtype=np.float32)
    x @ w
    rates = {}
    for threads in (1, None):
        with threadpool_limits(limits=threads, user_api="blas"):
            best = float("inf")
            for _ in range(repeats):
                start = time.perf_counter()
                x @ w
                best = min(best, time.perf_counter() - start)
            count = threads or blas_info()["threads"]
        rates[f"{count} thread{'s' if count > 1 else ''}"] = w.nbytes / best / 1e9
    return {"gbps": max(rates.values()), "by_threads": rates}


def run_worker(kind: str, folder: Path | str, tokens: int = 0, verbose: bool = False) -> dict:
    """Run one step in a fresh process. Everything heavy runs in one, so that each
    contender's peak memory is its own (Linux carries ru_maxrss over fork)."""
    cmd = [sys.executable, __file__, "--worker", kind, "--folder", str(folder), "--tokens", str(tokens)]
    cmd += ["--verbose"] if verbose else []
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{kind} failed on {folder}:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--models", default="gpt2-124m,smollm-135m,default")
    parser.add_argument("--mlx", action="store_true", help="also compare sonify's MLX backend with mlx-lm")
    parser.add_argument("--verbose", action="store_true", help="profile sonify's decoding step by phase")
    parser.add_argument(
        "--worker", choices=["sonify", "sonify-mlx", "transformers", "mlx-lm", "build", "bandwidth"], help=argparse.SUPPRESS
    )
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        work = {
            "sonify": lambda folder, tokens: worker_sonify(folder, tokens, profile=args.verbose),
            "sonify-mlx": lambda folder, tokens: worker_sonify(folder, tokens, backend="mlx"),
            "transformers": worker_transformers,
            "mlx-lm": worker_mlx_lm,
            "build": lambda folder, _: {"folder": str(build_shape(Path(folder).name, Path(folder)))},
            "bandwidth": lambda _, __: gemv_bandwidth_gbps(),
        }[args.worker]
        print(json.dumps(work(args.folder, args.tokens)))
        return

    from sonify.model.checkpoint import DEFAULT_MODEL_DIR

    measured = run_worker("bandwidth", "-")
    bandwidth = measured["gbps"]
    rates = ", ".join(f"{rate:.1f} on {threads}" for threads, rate in measured["by_threads"].items())
    print(f"matrix-vector bandwidth here: {bandwidth:.1f} GB/s (float32 gemv over 512 MB, the faster of {rates})")
    print(
        f"{'model':14s} {'sonify tok/s':>13s} {'transformers':>13s} {'ratio':>6s} {'sonify MB':>10s} {'weights MB':>11s} "
        f"{'trf MB':>8s} {'bound tok/s':>12s} {'of bound':>9s}"
    )
    mlx_rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            folder = DEFAULT_MODEL_DIR if name == "default" else Path(run_worker("build", Path(tmp) / name)["folder"])
            tokens = TOKENS_FOR_DEFAULT if name == "default" else args.tokens
            if args.mlx:
                mlx_rows.append((name, run_worker("sonify-mlx", folder, tokens), run_worker("mlx-lm", folder, tokens)))
            ours = run_worker("sonify", folder, tokens, verbose=args.verbose)
            theirs = run_worker("transformers", folder, tokens)
            bound = bandwidth * 1e9 / ours["weight_bytes"]
            print(
                f"{name:14s} {ours['tokens_per_s']:13.1f} {theirs['tokens_per_s']:13.1f} "
                f"{ours['tokens_per_s'] / theirs['tokens_per_s']:5.2f}x {ours['peak_rss_mb']:10.0f} {ours['weight_bytes'] / 2**20:11.0f} "
                f"{theirs['peak_rss_mb']:8.0f} "
                f"{bound:12.1f} {ours['tokens_per_s'] / bound:8.0%}",
                flush=True,
            )
            if "profile" in ours:
                print_profile(ours["profile"], bandwidth)
    if mlx_rows:
        print(f"\n{'model':14s} {'sonify mlx':>11s} {'mlx-lm':>8s} {'ratio':>6s}   (tokens/s; mlx-lm computes no telemetry)")
        for name, ours, theirs in mlx_rows:
            print(
                f"{name:14s} {ours['tokens_per_s']:11.1f} {theirs['tokens_per_s']:8.1f} {ours['tokens_per_s'] / theirs['tokens_per_s']:5.2f}x"
            )


if __name__ == "__main__":
    main()
