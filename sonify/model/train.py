"""Train sonify's default model: a small Llama-shaped model on public-domain verse.

This is a development tool, not part of the runtime: it needs PyTorch
(``pip install torch==2.13.0``, or the ``train`` extra), which sonify itself never
imports. It writes a folder in Hugging Face layout (``config.json``,
``model.safetensors`` in float16, ``tokenizer.json``, ``tokenizer_config.json``,
``generation_config.json``) plus a model card, so the result loads through the same
path as any real checkpoint, and ``transformers`` loads it as-is.

    python -m sonify.model.train --corpus ../shared/corpus --out sonify/model/default_model

Validation is the held-out last 10 % of every corpus file, measured in nats per
character with the same windowing sonify's engine uses when it reads a long text.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from sonify.model.evaluation import window_schedule

EOS = "<|endoftext|>"
CORPUS_FILES = ("tinyshakespeare.txt", "poetry_mix.txt")
HOLDOUT_FRACTION = 0.10


@dataclass
class TrainConfig:
    vocab_size: int = 2048
    hidden_size: int = 256
    num_layers: int = 6
    num_heads: int = 8
    num_kv_heads: int = 4
    intermediate_size: int = 688
    context: int = 256
    rope_theta: float = 10000.0
    dropout: float = 0.1
    batch_size: int = 16
    steps: int = 1400
    lr: float = 2e-3
    min_lr_fraction: float = 0.1
    warmup: int = 150
    weight_decay: float = 0.1
    eval_every: int = 200
    seed: int = 1234
    threads: int = 2


# --------------------------------------------------------------------------- data


def split_text(text: str) -> tuple[str, str]:
    """Split at the first line break after 90 % of the text: (train, held-out)."""
    cut = text.find("\n", int(len(text) * (1.0 - HOLDOUT_FRACTION)))
    cut = len(text) if cut < 0 else cut + 1
    return text[:cut], text[cut:]


def load_corpus(corpus: Path) -> dict[str, str]:
    texts = {}
    for name in CORPUS_FILES:
        path = corpus / name
        if not path.is_file():
            raise SystemExit(f"error: corpus file {path} not found; pass --corpus DIR holding {', '.join(CORPUS_FILES)}")
        texts[name] = path.read_text(encoding="utf-8")
    return texts


def train_tokenizer(train_texts: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(train_texts, trainer=trainer)
    return tokenizer


# -------------------------------------------------------------------------- model


def build_model(cfg: TrainConfig):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    head_dim = cfg.hidden_size // cfg.num_heads

    def rope_tables(length: int):
        inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, head_dim, 2).float() / head_dim))
        angles = torch.outer(torch.arange(length).float(), inv_freq)
        angles = torch.cat([angles, angles], dim=-1)
        return angles.cos(), angles.sin()

    def rotate_half(x):
        half = x.shape[-1] // 2
        return torch.cat([-x[..., half:], x[..., :half]], dim=-1)

    class RMSNorm(nn.Module):
        def __init__(self, dim: int):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(dim))

        def forward(self, x):
            return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            d, kv = cfg.hidden_size, cfg.num_kv_heads * head_dim
            self.input_layernorm = RMSNorm(d)
            self.q_proj = nn.Linear(d, d, bias=False)
            self.k_proj = nn.Linear(d, kv, bias=False)
            self.v_proj = nn.Linear(d, kv, bias=False)
            self.o_proj = nn.Linear(d, d, bias=False)
            self.post_attention_layernorm = RMSNorm(d)
            self.gate_proj = nn.Linear(d, cfg.intermediate_size, bias=False)
            self.up_proj = nn.Linear(d, cfg.intermediate_size, bias=False)
            self.down_proj = nn.Linear(cfg.intermediate_size, d, bias=False)

        def forward(self, x, cos, sin):
            b, t, _ = x.shape
            h = self.input_layernorm(x)
            q = self.q_proj(h).view(b, t, cfg.num_heads, head_dim).transpose(1, 2)
            k = self.k_proj(h).view(b, t, cfg.num_kv_heads, head_dim).transpose(1, 2)
            v = self.v_proj(h).view(b, t, cfg.num_kv_heads, head_dim).transpose(1, 2)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            repeat = cfg.num_heads // cfg.num_kv_heads
            k = k.repeat_interleave(repeat, dim=1)
            v = v.repeat_interleave(repeat, dim=1)
            p = cfg.dropout if self.training else 0.0
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p)
            x = x + F.dropout(self.o_proj(a.transpose(1, 2).reshape(b, t, -1)), p, self.training)
            h = self.post_attention_layernorm(x)
            return x + F.dropout(self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h)), p, self.training)

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
            self.layers = nn.ModuleList(Block() for _ in range(cfg.num_layers))
            self.norm = RMSNorm(cfg.hidden_size)
            cos, sin = rope_tables(cfg.context)
            self.register_buffer("cos", cos, persistent=False)
            self.register_buffer("sin", sin, persistent=False)
            self.apply(self._init)
            for block in self.layers:  # scaled init of the residual projections (GPT-2 style)
                for proj in (block.o_proj, block.down_proj):
                    nn.init.normal_(proj.weight, std=0.02 / math.sqrt(2 * cfg.num_layers))

        @staticmethod
        def _init(module):
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)

        def forward(self, ids):
            t = ids.shape[1]
            x = F.dropout(self.embed_tokens(ids), cfg.dropout, self.training)
            cos, sin = self.cos[:t], self.sin[:t]
            for block in self.layers:
                x = block(x, cos, sin)
            return self.norm(x) @ self.embed_tokens.weight.T

    return Model()


def hf_state_dict(model, cfg: TrainConfig) -> dict[str, np.ndarray]:
    """The model's weights under Hugging Face Llama names, as float16 arrays."""
    out = {"model.embed_tokens.weight": model.embed_tokens.weight, "model.norm.weight": model.norm.weight}
    for i, block in enumerate(model.layers):
        p = f"model.layers.{i}."
        out[p + "input_layernorm.weight"] = block.input_layernorm.weight
        out[p + "post_attention_layernorm.weight"] = block.post_attention_layernorm.weight
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            out[p + f"self_attn.{name}.weight"] = getattr(block, name).weight
        for name in ("gate_proj", "up_proj", "down_proj"):
            out[p + f"mlp.{name}.weight"] = getattr(block, name).weight
    return {k: v.detach().float().numpy().astype(np.float16) for k, v in out.items()}


def hf_config(cfg: TrainConfig, eos_id: int) -> dict:
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "num_key_value_heads": cfg.num_kv_heads,
        "head_dim": cfg.hidden_size // cfg.num_heads,
        "max_position_embeddings": cfg.context,
        "rms_norm_eps": 1e-5,
        "rope_theta": cfg.rope_theta,
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": True,
        "bos_token_id": eos_id,
        "eos_token_id": eos_id,
        "torch_dtype": "float16",
    }


# --------------------------------------------------------------------- evaluation


def evaluate(model, ids: np.ndarray, eos_id: int, context: int, batch: int = 32) -> float:
    """Total nats over the held-out tokens, each predicted as the engine would predict it."""
    import torch

    seq = np.concatenate([[eos_id], ids]).astype(np.int64)
    total = 0.0
    windows = window_schedule(len(ids), context)
    model.eval()
    with torch.no_grad():
        for i in range(0, len(windows), batch):
            group = windows[i : i + batch]
            width = max(e - s for s, e, _ in group)
            x = np.full((len(group), width), eos_id, dtype=np.int64)
            for row, (s, e, _) in enumerate(group):
                x[row, : e - s] = seq[s:e]
            logp = torch.log_softmax(model(torch.from_numpy(x)).float(), dim=-1)
            for row, (s, e, first) in enumerate(group):
                targets = np.arange(first, e + 1)
                total -= logp[row, torch.from_numpy(targets - 1 - s), torch.from_numpy(seq[targets])].sum().item()
    model.train()
    return total


def sample(model, tokenizer, eos_id: int, context: int, n: int, temperature: float, seed: int) -> str:
    import torch

    gen = torch.Generator().manual_seed(seed)
    ids = [eos_id]
    model.eval()
    with torch.no_grad():
        for _ in range(n):
            logits = model(torch.tensor([ids[-context:]]))[0, -1] / temperature
            nxt = int(torch.multinomial(torch.softmax(logits, -1), 1, generator=gen))
            if nxt == eos_id:
                break
            ids.append(nxt)
    model.train()
    return tokenizer.decode(ids[1:])


# -------------------------------------------------------------------------- train


def write_folder(out: Path, model, cfg: TrainConfig, tokenizer, eos_id: int, card: dict) -> None:
    from safetensors.numpy import save_file

    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "model.safetensors.tmp"
    save_file(hf_state_dict(model, cfg), str(tmp), metadata={"format": "pt"})
    tmp.replace(out / "model.safetensors")
    tokenizer.save(str(out / "tokenizer.json"))
    (out / "config.json").write_text(json.dumps(hf_config(cfg, eos_id), indent=2) + "\n")
    (out / "generation_config.json").write_text(
        json.dumps({"bos_token_id": eos_id, "eos_token_id": eos_id, "do_sample": True, "temperature": 0.8}, indent=2) + "\n"
    )
    (out / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "bos_token": EOS,
                "eos_token": EOS,
                "unk_token": EOS,
                "model_max_length": cfg.context,
                "clean_up_tokenization_spaces": False,
            },
            indent=2,
        )
        + "\n"
    )
    (out / "model_card.json").write_text(json.dumps(card, indent=2) + "\n")
    (out / "README.md").write_text(model_card_markdown(card))


def model_card_markdown(card: dict) -> str:
    arch = card["architecture"]
    lines = [
        "# sonify default model",
        "",
        "A small Llama-shaped language model trained by the sonify project on public-domain verse,",
        "shipped inside the package so that sonify works offline. Hugging Face layout, float16 weights.",
        "",
        "## Corpus",
        "",
    ]
    for name, info in card["corpus"].items():
        lines.append(f"- `{name}`: {info['chars']:,} characters, md5 `{info['md5']}`; last 10 % held out")
    lines += [
        "",
        "## Architecture",
        "",
        f"Llama block (RMSNorm, RoPE, SwiGLU, grouped-query attention), {arch['num_layers']} layers, "
        f"hidden size {arch['hidden_size']}, {arch['num_heads']} query heads / {arch['num_kv_heads']} key-value heads, "
        f"MLP {arch['intermediate_size']}, context {arch['context']} tokens, tied embeddings; "
        f"byte-level BPE vocabulary of {arch['vocab_size']} tokens. {card['parameters']:,} parameters.",
        "",
        "## Training",
        "",
        f"{card['steps']} steps (the best validation of {card.get('steps_planned', card['steps'])} planned) of "
        f"{arch['batch_size']} x {arch['context']} tokens, AdamW, peak learning rate {arch['lr']}, cosine decay, "
        f"dropout {arch.get('dropout', 0.0)}; {card['wall_time_s'] / 60:.1f} minutes on {card['hardware']}.",
        "",
        "## Validation",
        "",
        f"Held-out loss: **{card['val_nats_per_char']:.4f} nats per character** over the held-out last 10 % "
        "of each corpus file (float16 weights, read as sonify's engine reads: start token, then a "
        f"{arch['context']}-token window that keeps its newest three quarters when full"
        f"{'; evaluated by ' + card['val_evaluated_by'] if 'val_evaluated_by' in card else ''}).",
        "",
    ]
    for name, value in card["val_nats_per_char_by_file"].items():
        lines.append(f"- `{name}`: {value:.4f}")
    lines += ["", "## A sample (temperature 0.8)", "", "```", card["sample"].strip(), "```", ""]
    return "\n".join(lines)


def finalize_card(out: Path, texts: dict[str, str]) -> dict:
    """Re-evaluate the saved float16 folder with sonify's own engine and record that in the card.

    The card's validation figure is then exactly what ``tests/test_default_model.py``
    re-checks, computed by the code that users run.
    """
    from sonify.model.evaluation import text_nats
    from sonify.model.loader import load_model

    model = load_model(out)
    card = json.loads((out / "model_card.json").read_text())
    by_file, nats, chars = {}, 0.0, 0
    for name, text in texts.items():
        _, held_out = split_text(text)
        total = text_nats(model, held_out)
        by_file[name] = total / len(held_out)
        nats, chars = nats + total, chars + len(held_out)
    card.update(val_nats_per_char=nats / chars, val_nats_per_char_by_file=by_file, val_evaluated_by="sonify NumPy engine")
    (out / "model_card.json").write_text(json.dumps(card, indent=2) + "\n")
    (out / "README.md").write_text(model_card_markdown(card))
    return card


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, required=True, help="folder holding the corpus files")
    parser.add_argument("--out", type=Path, required=True, help="output folder (Hugging Face layout)")
    parser.add_argument("--finalize", action="store_true", help="only re-evaluate an existing --out folder with sonify's engine")
    for field, value in asdict(TrainConfig()).items():
        parser.add_argument("--" + field.replace("_", "-"), type=type(value), default=value)
    args = parser.parse_args(argv)
    cfg = TrainConfig(**{k: getattr(args, k) for k in asdict(TrainConfig())})
    if args.finalize:
        card = finalize_card(args.out, load_corpus(args.corpus))
        print(f"validation (sonify engine): {card['val_nats_per_char']:.4f} nats/char {card['val_nats_per_char_by_file']}")
        return

    import torch

    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed)

    texts = load_corpus(args.corpus)
    splits = {name: split_text(text) for name, text in texts.items()}
    tokenizer = train_tokenizer([train for train, _ in splits.values()], cfg.vocab_size)
    eos_id = tokenizer.token_to_id(EOS)

    # Training windows start at line starts, behind the start token, as a reading does.
    ends_line = np.array([tokenizer.decode([i]).endswith("\n") for i in range(cfg.vocab_size)])
    train_ids, line_starts, offset = [], [], 0
    for train, _ in splits.values():
        ids = np.array(tokenizer.encode(train).ids, dtype=np.int64)
        starts = np.flatnonzero(ends_line[ids[:-1]]) + 1
        line_starts.append(offset + starts[starts + cfg.context < len(ids)])
        train_ids.append(ids)
        offset += len(ids)
    data = np.concatenate(train_ids)
    line_starts = np.concatenate(line_starts)
    val = {name: (np.array(tokenizer.encode(held).ids, dtype=np.int64), len(held)) for name, (_, held) in splits.items()}
    print(
        f"train tokens {len(data):,} ({sum(len(t) for t, _ in splits.values()) / len(data):.2f} chars/token), "
        f"val tokens {sum(len(v) for v, _ in val.values()):,}",
        flush=True,
    )

    model = build_model(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"parameters {n_params:,}", flush=True)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.95),
    )

    def lr_at(step: int) -> float:
        if step < cfg.warmup:
            return cfg.lr * (step + 1) / cfg.warmup
        progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return cfg.lr * (cfg.min_lr_fraction + (1 - cfg.min_lr_fraction) * 0.5 * (1 + math.cos(math.pi * progress)))

    def val_loss() -> tuple[float, dict[str, float]]:
        by_file, nats, chars = {}, 0.0, 0
        for name, (ids, n_chars) in val.items():
            total = evaluate(model, ids, eos_id, cfg.context)
            by_file[name] = total / n_chars
            nats, chars = nats + total, chars + n_chars
        return nats / chars, by_file

    def card(step: int, elapsed: float, loss: float, by_file: dict[str, float], text: str) -> dict:
        return {
            "corpus": {
                name: {"chars": len(texts[name]), "md5": hashlib.md5(texts[name].encode("utf-8")).hexdigest()} for name in texts
            },
            "architecture": asdict(cfg),
            "parameters": n_params,
            "steps": step,
            "steps_planned": cfg.steps,
            "wall_time_s": round(elapsed, 1),
            "hardware": f"CPU, {cfg.threads} threads, PyTorch {torch.__version__}",
            "val_nats_per_char": loss,
            "val_nats_per_char_by_file": by_file,
            "sample": text,
        }

    start, best = time.time(), float("inf")
    x_idx = np.arange(cfg.context - 1)
    for step in range(cfg.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        starts = rng.choice(line_starts, cfg.batch_size)
        rows = data[starts[:, None] + x_idx[None, :]]
        batch = torch.from_numpy(
            np.concatenate(
                [
                    np.full((cfg.batch_size, 1), eos_id),
                    rows,
                ],
                axis=1,
            )
        )
        targets = torch.from_numpy(data[starts[:, None] + np.arange(cfg.context)[None, :]])
        logits = model(batch)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, cfg.vocab_size), targets.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 50 == 0:
            print(f"step {step} loss {loss.item():.4f} lr {lr_at(step):.2e} {time.time() - start:.0f}s", flush=True)
        if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps:
            # Evaluate the float16-rounded weights: those are what ships.
            with torch.no_grad():
                for p in model.parameters():
                    p.copy_(p.half().float())
            v, by_file = val_loss()
            text = sample(model, tokenizer, eos_id, cfg.context, 160, 0.8, cfg.seed)
            print(f"step {step + 1} val {v:.4f} nats/char {by_file}", flush=True)
            if v < best:  # keep the best checkpoint: on a small corpus, more epochs can overfit
                best = v
                write_folder(args.out, model, cfg, tokenizer, eos_id, card(step + 1, time.time() - start, v, by_file, text))
    final = finalize_card(args.out, texts)
    print(f"validation (sonify engine): {final['val_nats_per_char']:.4f} nats/char", flush=True)


if __name__ == "__main__":
    main()
