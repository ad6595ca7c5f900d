"""`sonify calibrate`: measure a model's telemetry over the reference text, once."""

from __future__ import annotations

import argparse
import sys

from .common import add_model_args, model_settings


def register(sub: argparse._SubParsersAction) -> None:
    calibrate = sub.add_parser(
        "calibrate",
        help="measure a model's calibration: what its telemetry spans over a reference text",
        description=(
            "Read the reference text with the model and store the percentiles of every signal per word, so presets' "
            "limits (\"5%%\", \"95%%\") mean fixed numbers for this model. Kept in the model's folder where it can be "
            "written, else in ~/.cache/sonify/calibration/. Renders do this on first use of a model; run it to "
            "measure again or ahead of a performance."
        ),
    )
    add_model_args(calibrate)
    calibrate.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..pipeline import calibrate

    model = model_settings(args).load()
    calibration, path = calibrate(model)
    where = f"wrote {path}" if path is not None else "could not store it (neither the model's folder nor the cache is writable)"
    print(f"{model.name}: calibrated over {calibration.words} words; {where}", file=sys.stderr)
    for name in ("surprisal", "entropy", "attention_entropy"):
        table = calibration.signals[name]
        print(f"  {name:18s} 5% {table[5]:8.3f}   50% {table[50]:8.3f}   95% {table[95]:8.3f}", file=sys.stderr)
    return 0
