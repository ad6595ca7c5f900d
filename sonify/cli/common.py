"""What the commands share: reading the text, the flag groups, and the settings they build."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import SonifyError

RENDERS = Path("renders")
VIRTUAL = "<virtual>"
DEFAULT_TOKENS_HELP = 200


def read_text(source: str) -> tuple[str, str]:
    """The text of ``source`` (a path, or ``-`` for stdin) and a short name for outputs."""
    if source == "-":
        data, name = sys.stdin.buffer.read(), "stdin"
    else:
        path = Path(source)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise SonifyError(f"text file {path} does not exist") from None
        except IsADirectoryError:
            raise SonifyError(f"{path} is a folder; --read takes a text file") from None
        except OSError as exc:
            raise SonifyError(f"cannot read {path}: {exc.strerror}") from None
        name = path.stem
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SonifyError(
            f"{source} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            f"convert it, e.g. iconv -f LATIN1 -t UTF-8 {source}"
        ) from None
    if not text.strip():
        raise SonifyError(f"{source} holds no text to read")
    return text, name


def add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument(
        "--model", metavar="DIR", help="checkpoint folder, HF cache folder or cached hub id (default: the shipped model)"
    )
    g.add_argument("--backend", default="auto", help="auto | numpy | mlx (default: auto = MLX on Apple Silicon, else NumPy)")
    g.add_argument("--window", type=int, metavar="N", help="context window in tokens (default: the model's, at most 2048)")
    g.add_argument("--threads", type=int, metavar="N", help="BLAS threads (default: all cores)")


def add_sampler_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("sampling (generation only)")
    g.add_argument("--temp", type=float, default=0.8, help="temperature; 0 = always the most likely token (default: 0.8)")
    g.add_argument("--top-k", type=int, default=0, help="keep the K most likely tokens (default: 0 = off)")
    g.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (default: 1.0 = off)")
    g.add_argument("--min-p", type=float, default=0.0, help="drop tokens below MIN_P x the top probability (default: 0 = off)")
    g.add_argument("--repetition-penalty", type=float, default=1.0, help="penalise recent tokens (default: 1.0 = off)")
    g.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")


def add_output_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("music and output")
    g.add_argument("--preset", default="default", help="preset name or .toml file (default: default; see sonify presets)")
    g.add_argument("--out", type=Path, default=RENDERS, metavar="DIR", help="output folder (default: renders)")
    g.add_argument("--name", metavar="NAME", help="file name for the outputs, without suffix (default: from the prompt or file)")
    g.add_argument("--format", choices=("wav", "flac"), default="wav", help="audio file format (default: wav)")
    g.add_argument("--bits", choices=("16", "24", "float"), default="24", help="audio sample format (default: 24)")
    g.add_argument("--rate", type=int, choices=(44100, 48000), help="sample rate in Hz (default: the preset's, 48000)")
    g.add_argument("--soundfont", metavar="SF2", help="play the Score with this SoundFont through FluidSynth instead of our synth")
    g.add_argument("--plot", action="store_true", help="also write a plot (PNG) of the telemetry and the notes")
    g.add_argument("--no-audio", action="store_true", help="write no audio (MIDI, transcripts and trace only)")
    g.add_argument("--quiet", action="store_true", help="do not echo the text as it comes")


def model_settings(args: argparse.Namespace, alternatives: int = 5):
    """The ModelSettings the model flags name."""
    from ..model.loader import ModelSettings

    return ModelSettings(args.model, args.backend, args.window, args.threads, alternatives)


def generation(args: argparse.Namespace):
    """The Generation (sampler, seed, end-of-text) the sampling flags name."""
    from ..model.sampling import Generation, SamplerSettings

    sampler = SamplerSettings(
        temperature=args.temp, top_k=args.top_k, top_p=args.top_p, min_p=args.min_p, repetition_penalty=args.repetition_penalty
    )
    return Generation(sampler, args.seed, getattr(args, "ignore_eos", False))


def output_settings(args: argparse.Namespace, name: str):
    """The OutputSettings the output flags name; ``name`` when --name gives none."""
    from ..pipeline import DEFAULT_OUTPUTS, SUBTYPES, OutputSettings

    outputs = [o for o in DEFAULT_OUTPUTS if not (o == "audio" and args.no_audio)]
    outputs += ["plot"] if args.plot else []
    return OutputSettings(args.out, args.name or name, tuple(outputs), args.format, SUBTYPES[args.bits], args.rate, args.soundfont)
