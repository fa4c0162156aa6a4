"""`cae` command line, intentionally thin: parse, load config, call one function, print.

Every user error is a ``CAEError`` and ends as one line on stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

# Quieter TensorFlow start-up (before anything imports it); users can still override.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from cae.errors import CAEError  # noqa: E402


def _overrides(args: argparse.Namespace, prefix: str = "") -> dict[str, Any]:
    """Make variables / flags -> dotted config keys (``prefix`` = "experiment." for searches)."""
    from cae.config import parse_assignment

    out: dict[str, Any] = {}
    for flag, key in (("data", "data.source"), ("subset", "data.subset"), ("epochs", "train.epochs"), ("seed", "seed")):
        value = getattr(args, flag, None)
        if value is not None:
            out[prefix + key] = value
    for text in getattr(args, "set", None) or []:
        key, value = parse_assignment(text)
        out[key] = value
    return out


def _add_training_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="CIFAR-10 source: path, 'keras' or 'sample' (default: auto)")
    p.add_argument("--subset", type=int, help="N training images (and N/8 val/test)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override any config key, e.g. train.learning_rate=3e-4")


def cmd_train(args: argparse.Namespace) -> int:
    from cae.config import load_experiment
    from cae.experiment import run_experiment
    from cae.tracking import Tracker
    from cae.train import configure_threads

    config = load_experiment(args.config, _overrides(args))
    tracker = Tracker().check()
    configure_threads()
    run_id, result, out = run_experiment(config, tracker)
    print(f"\n{config.name}: {result.n_params:,} params, latent {result.latent_values} values "
          f"(narrowest {result.bottleneck_values}), best val MSE {result.best_val_loss:.6f} at epoch {result.best_epoch}")
    print(f"test MSE {result.test['test_mse']:.6f}  PSNR {result.test['test_psnr']:.2f} dB  "
          f"SSIM {result.test['test_ssim']:.4f}  ({result.seconds_per_epoch:.1f} s/epoch)")
    print(f"MLflow run {run_id} in {tracker.uri}; outputs in {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cae", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train one experiment config and log it to MLflow")
    p.add_argument("config", nargs="?", default="experiments/reference.yaml")
    _add_training_flags(p)
    p.set_defaults(func=cmd_train)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CAEError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
