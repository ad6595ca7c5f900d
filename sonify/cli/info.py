"""`sonify models`, `sonify presets` and `sonify explain`: what is here, and what it does."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    presets = sub.add_parser("presets", help="list the presets with one line each", description="List the presets: shipped and your own.")
    presets.set_defaults(run=run_presets)
    explain = sub.add_parser(
        "explain",
        help="say which signal drives which musical parameter in a preset",
        description="Print a preset's legend: what each voice plays and which telemetry drives it.",
    )
    explain.add_argument("preset", nargs="?", default="default", help="preset name or .toml path (default: default)")
    explain.add_argument("--model", metavar="DIR", help="give the limits in this model's units (default: the shipped model's)")
    explain.add_argument(
        "--server",
        action="store_true",
        help="say what each voice does for a model behind an inference server (no attention, layer or embedding telemetry)",
    )
    explain.set_defaults(run=run_explain)
    models = sub.add_parser(
        "models", help="list the models found on this machine", description="List the shipped model and the local HF cache."
    )
    models.set_defaults(run=run_models)


def run_models(args: argparse.Namespace) -> int:
    from ..model.checkpoint import list_local_models

    for name, folder in list_local_models():
        print(f"{name:40s} {folder}")
    return 0


def run_presets(args: argparse.Namespace) -> int:
    from ..music.preset import load_preset, preset_names

    names = preset_names()
    width = max(len(n) for n in names)
    for name in names:
        print(f"{name:{width}s}  {load_preset(name).description}")
    return 0


def run_explain(args: argparse.Namespace) -> int:
    from ..music.explain import explain
    from ..music.preset import load_preset

    preset = load_preset(args.preset)
    calibration = None
    if args.model is not None:
        from ..model.loader import ModelSettings
        from ..pipeline import calibration_for

        calibration = calibration_for(ModelSettings(args.model).load())
    from ..model.frame import TELEMETRY_GROUPS

    print(explain(preset, calibration, TELEMETRY_GROUPS if args.server else ()))
    return 0
