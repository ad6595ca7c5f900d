"""The shipped model's held-out loss, re-computed with our engine over its whole corpus.

    python3 benchmarks/bench_heldout.py CORPUS_DIR [--write-test-data]

CORPUS_DIR holds the training corpus (tinyshakespeare.txt, poetry_mix.txt; ../shared/corpus
in our set-up). Checks the files against the model card's checksums, then reads the held-out
last 10 % of each file as the engine reads it and prints nats per character beside the
card's figures (about 1.5 minutes on 2 cores). It also checks the small test data that
tests/test_default_model.py uses in place of the corpus, and with --write-test-data writes
it again from this corpus:

- tests/texts/held_out_excerpts.json: five lines-aligned passages of about 1,200 characters
  from each file's held-out part, evenly spaced, with their offsets and their loss under the
  shipped weights;
- tests/texts/corpus_words.txt: the words the training part uses 20 times or more.

Exit status 1 when a figure is off the card by more than 0.002 nats or above 1.50.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import re
import sys
import time
from pathlib import Path

from sonify import load_model
from sonify.model.checkpoint import DEFAULT_MODEL_DIR
from sonify.model.evaluation import text_nats
from sonify.model.train import CORPUS_FILES, load_corpus, split_text

TESTS = Path(__file__).resolve().parents[1] / "tests" / "texts"
EXCERPTS = TESTS / "held_out_excerpts.json"
WORDS = TESTS / "corpus_words.txt"
PER_FILE, EXCERPT_CHARS, MIN_COUNT = 5, 1200, 20
TOLERANCE, BOUND = 2e-3, 1.50


def excerpts_of(name: str, text: str) -> list[dict]:
    """PER_FILE passages of whole lines, evenly spaced over the held-out part of ``text``."""
    train, held_out = split_text(text)
    found = []
    for k in range(PER_FILE):
        start = held_out.find("\n", len(held_out) * k // PER_FILE) + 1
        end = held_out.find("\n", start + EXCERPT_CHARS) + 1 or len(held_out)
        found.append({"file": name, "offset": len(train) + start, "text": held_out[start:end]})
    return found


def excerpts_nats(model, excerpts: list[dict]) -> float:
    """Nats per character over the excerpts, each read on its own from the start token."""
    return sum(text_nats(model, e["text"]) for e in excerpts) / sum(len(e["text"]) for e in excerpts)


def common_words(corpus: dict[str, str]) -> list[str]:
    counts = collections.Counter()
    for text in corpus.values():
        counts.update(re.findall(r"[a-z]+", split_text(text)[0].lower()))
    return sorted(w for w, n in counts.items() if n >= MIN_COUNT)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path, help="folder holding " + ", ".join(CORPUS_FILES))
    parser.add_argument("--write-test-data", action="store_true", help=f"write {EXCERPTS.name} and {WORDS.name} again")
    args = parser.parse_args()

    card = json.loads((DEFAULT_MODEL_DIR / "model_card.json").read_text())
    corpus = load_corpus(args.corpus)
    for name, text in corpus.items():
        if hashlib.md5(text.encode("utf-8")).hexdigest() != card["corpus"][name]["md5"]:
            print(f"error: {args.corpus / name} is not the corpus the model card names (md5 differs)", file=sys.stderr)
            return 1
    model = load_model()
    ok = True

    print(f"{'held-out part':<24}{'chars':>9}{'nats/char':>11}{'card':>9}{'seconds':>9}")
    nats = chars = 0.0
    for name, text in corpus.items():
        held_out = split_text(text)[1]
        t0 = time.perf_counter()
        file_nats = text_nats(model, held_out)
        seconds = time.perf_counter() - t0
        expected = card["val_nats_per_char_by_file"][name]
        ok &= abs(file_nats / len(held_out) - expected) <= TOLERANCE
        print(f"{name:<24}{len(held_out):>9,}{file_nats / len(held_out):>11.4f}{expected:>9.4f}{seconds:>9.1f}")
        nats, chars = nats + file_nats, chars + len(held_out)
    ok &= abs(nats / chars - card["val_nats_per_char"]) <= TOLERANCE and nats / chars <= BOUND
    print(f"{'all':<24}{int(chars):>9,}{nats / chars:>11.4f}{card['val_nats_per_char']:>9.4f}")

    excerpts = [e for name, text in corpus.items() for e in excerpts_of(name, text)]
    measured = excerpts_nats(model, excerpts)
    words = common_words(corpus)
    if args.write_test_data:
        about = (
            f"{PER_FILE} passages from the held-out last 10 % of each corpus file the default model was trained on; "
            "offset: the passage's first character in the file; nats_per_char: the shipped weights' loss over them, "
            "each read from the start token. Written by benchmarks/bench_heldout.py --write-test-data."
        )
        EXCERPTS.write_text(
            json.dumps({"about": about, "nats_per_char": measured, "excerpts": excerpts}, indent=1, ensure_ascii=False) + "\n",
            encoding="utf-8",
        )
        header = f"# the words the default model's training text uses {MIN_COUNT}+ times (benchmarks/bench_heldout.py)\n"
        WORDS.write_text(header + "\n".join(words) + "\n", encoding="utf-8")
    shipped = json.loads(EXCERPTS.read_text(encoding="utf-8"))
    same_data = shipped["excerpts"] == excerpts and WORDS.read_text(encoding="utf-8").split("\n")[1:-1] == words
    ok &= same_data and abs(shipped["nats_per_char"] - measured) <= TOLERANCE
    print(
        f"test excerpts ({len(excerpts)}, {sum(len(e['text']) for e in excerpts):,} chars): {measured:.4f} nats/char, "
        f"recorded {shipped['nats_per_char']:.4f}; the test data {'matches' if same_data else 'DIFFERS FROM'} this corpus"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
