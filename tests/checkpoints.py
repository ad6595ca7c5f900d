"""Small random checkpoints built with Hugging Face ``transformers``, saved as real folders.

They are the independent oracle: the same folder is loaded by ``transformers`` (eager
attention) and by sonify, and the two must agree.
"""

from __future__ import annotations

from pathlib import Path

TEXT = (
    "Shall I compare thee to a summer's day?\nThou art more lovely and more temperate:\n"
    "Rough winds do shake the darling buds of May,\nAnd summer's lease hath all too short a date.\n"
    "Naïve café, déjà vu — señor Müller's 東京 trip, emoji 🎵🎶, and quotes “like this”.\n"
)
VOCAB = 384


def build_tokenizer(folder: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([TEXT * 4], trainer=trainer)
    tok.save(str(folder / "tokenizer.json"))


def build(kind: str, folder: Path, **overrides) -> Path:
    """Build and save a random ``gpt2``, ``llama`` (GQA, untied) or ``qwen2`` checkpoint."""
    import torch
    import transformers as tf

    torch.manual_seed({"gpt2": 1, "llama": 2, "qwen2": 3, "mistral": 4}[kind])
    common = dict(vocab_size=VOCAB, bos_token_id=0, eos_token_id=0, initializer_range=0.15)
    if kind == "gpt2":
        config = tf.GPT2Config(n_embd=64, n_layer=3, n_head=4, n_positions=64, **{**common, **overrides})
        model = tf.GPT2LMHeadModel(config)
    else:
        cls_config, cls_model = {
            "llama": (tf.LlamaConfig, tf.LlamaForCausalLM),
            "qwen2": (tf.Qwen2Config, tf.Qwen2ForCausalLM),
            "mistral": (tf.MistralConfig, tf.MistralForCausalLM),
        }[kind]
        params = dict(
            hidden_size=64,
            intermediate_size=96,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=64,
            tie_word_embeddings=False,
            rope_theta=5000.0,
        )
        config = cls_config(**{**common, **params, **overrides})
        model = cls_model(config)
    with torch.no_grad():  # perturb norms and biases so that none is trivially one or zero
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    build_tokenizer(folder)
    return folder


def load_reference(folder: Path):
    """The same folder in ``transformers``, float32, eager attention."""
    import torch
    import transformers as tf

    model = tf.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    return model
