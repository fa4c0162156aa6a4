"""`cae` command line, intentionally thin: parse, load config, call one function, print.

Every user error is a ``CAEError`` and ends as one line on stderr with exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

# Quieter TensorFlow start-up (before anything imports it); users can still override.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
logging.getLogger("tensorflow").setLevel(logging.ERROR)  # e.g. tf.function retracing notes between trials

from cae.config import SearchConfig  # noqa: E402
from cae.errors import CAEError, disk_full  # noqa: E402


def _overrides(args: argparse.Namespace, prefix: str = "") -> dict[str, Any]:
    """Make variables / flags -> dotted config keys (``prefix`` = "experiment." for searches)."""
    from cae.schema import parse_assignment

    out: dict[str, Any] = {}
    for flag, key in (("data", "data.source"), ("subset", "data.subset"), ("epochs", "train.epochs"), ("seed", "seed")):
        value = getattr(args, flag, None)
        if value is not None:
            out[prefix + key] = None if flag == "subset" and value == 0 else value  # SUBSET=0: the full split
    for text in getattr(args, "set", None) or []:
        key, value = parse_assignment(text)
        out[key] = value
    return out


def _add_training_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="CIFAR-10 source: path, 'keras' or 'sample' (default: auto)")
    p.add_argument("--subset", type=int, help="N training images (and N/8 val/test); 0 = the full split")
    p.add_argument("--epochs", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override any config key, e.g. train.learning_rate=3e-4"
    )


def cmd_train(args: argparse.Namespace) -> int:
    from cae.config import load_experiment
    from cae.experiment import run_experiment
    from cae.hardware import configure_threads
    from cae.tracking import Tracker

    config = load_experiment(args.config, {**_overrides(args), **({"name": args.study} if args.study else {})})
    tracker = Tracker().check()
    configure_threads()
    run_id, result, out = run_experiment(config, tracker)
    print(
        f"\n{config.name}: {result.n_params:,} params, latent {result.latent_values} values "
        f"(narrowest {result.bottleneck_values}), best val MSE {result.best_val_loss:.6f} at epoch {result.best_epoch}"
    )
    print(
        f"test MSE {result.test['test_mse']:.6f}  PSNR {result.test['test_psnr']:.2f} dB  "
        f"SSIM {result.test['test_ssim']:.4f}  ({result.seconds_per_epoch:.1f} s/epoch)"
    )
    print(f"MLflow run {run_id} in {tracker.uri}; outputs in {out}")
    return 0


def _search_config(args: argparse.Namespace) -> Any:
    from cae.config import load_search

    overrides = _overrides(args, prefix="experiment.")
    for flag in ("trials", "study", "storage", "engine", "workers", "timeout"):
        if getattr(args, flag, None) is not None:
            overrides[flag] = getattr(args, flag)
    cfg = load_search(args.config, overrides)
    if cfg.engine == "keras-tuner" and getattr(args, "study", None) is None:
        # Its own study (MLflow experiment, runs/<study>/) so the engines can be compared side by side.
        cfg = type(cfg)(**{**cfg.__dict__, "study": f"{cfg.study}-kt"})
    return cfg


def cmd_search(args: argparse.Namespace) -> int:
    cfg = _search_config(args)
    if cfg.engine == "keras-tuner":
        from cae.search.tuner import run_tuner

        run_tuner(cfg)
    elif args.join:
        from cae.search.workers import join

        join(cfg, index=args.index)
    else:
        from cae.search.run import run_search

        run_search(cfg)
    return 0


def cmd_search_worker(args: argparse.Namespace) -> int:
    from cae.search.workers import worker_main

    worker_main(args.config, args.index, args.parent_run_id, args.tracking_uri)
    return 0


def cmd_best(args: argparse.Namespace) -> int:
    import json

    from cae.search.best import read_best

    print(json.dumps(read_best(args.study or _search_config(args).study), indent=2))
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    from cae.ui import serve

    return serve(args.study, args.host, args.port, auth=args.auth)


def cmd_dashboard(args: argparse.Namespace) -> int:
    from cae.dashboard import serve

    return serve(args.storage, args.host, args.port)


def cmd_compare(args: argparse.Namespace) -> int:
    from cae.compare import compare, format_table

    def split(text: str | None) -> list[str]:
        return [t.strip() for t in (text or "").split(",") if t.strip()]

    try:
        trial_ids = [int(t) for t in split(args.trial_ids)]
    except ValueError:
        from cae.errors import CAEError

        raise CAEError(f"TRIAL_IDS must be comma-separated trial numbers, got {args.trial_ids!r}") from None
    rows, png, csv_path = compare(
        split(args.study) or [SearchConfig().study], top=args.top, trial_ids=trial_ids, run_ids=split(args.runs),
        states=[s.upper() for s in split(args.states)] or ["COMPLETE", "PRUNED"], log_y=not args.linear,
    )  # fmt: skip
    print(format_table(rows))
    print(f"\nplot: {png}\ntable: {csv_path}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from cae.report.build import build_report

    cfg = _search_config(args)
    data = {k: v for k, v in _overrides(args).items() if k in ("data.source", "data.subset", "seed")}
    print(f"wrote {build_report(cfg, epochs=args.epochs, data=data)}")
    return 0


def cmd_colorize(args: argparse.Namespace) -> int:
    from cae.colorize.best import colorize
    from cae.colorize.variants import ALL

    variants = list(ALL) if args.variant == "all" else [v.strip() for v in args.variant.split(",")]
    report = colorize(
        args.study, config_path=args.config, variants=variants, overrides=_overrides(args), vivid=args.vivid or None
    )
    print(f"wrote {report}")
    return 0


def cmd_colorize_search(args: argparse.Namespace) -> int:
    from cae.colorize.search import colorize_search

    overrides = _overrides(args, prefix="experiment.")
    for flag in ("trials", "storage", "engine", "workers", "timeout", "final_epochs"):
        if getattr(args, flag, None) is not None:
            overrides[flag] = getattr(args, flag)
    print(f"wrote {colorize_search(args.config, args.study or SearchConfig().study, overrides)}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from cae.bench.run import run_bench

    print(f"wrote {run_bench(args.quick, args.data)}")
    return 0


def _add_search_flags(p: argparse.ArgumentParser, config: str | None = "experiments/search.yaml") -> None:
    p.add_argument("config", nargs="?", default=config)
    p.add_argument("--study", help="the study (for colorize-search: the reconstruction study it starts from)")
    p.add_argument("--trials", type=int, help="finished trials the study should hold in total")
    p.add_argument("--storage", help="Optuna storage URL (default sqlite:///<repo>/runs/optuna.db)")
    p.add_argument("--engine", choices=["optuna", "keras-tuner"])
    p.add_argument("--workers", type=int)
    p.add_argument("--timeout", type=float, help="seconds for this call")
    _add_training_flags(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cae", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train one experiment config and log it to MLflow")
    p.add_argument("config", nargs="?", default="experiments/reference.yaml")
    p.add_argument("--study", help="MLflow experiment for the run (default: the config's name)")
    _add_training_flags(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("search", help="run or resume a search (Optuna or keras-tuner)")
    _add_search_flags(p)
    p.add_argument("--join", action="store_true", help="join an existing study as one more worker")
    p.add_argument("--index", type=int, default=0, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("search-worker", help=argparse.SUPPRESS)
    p.add_argument("config")
    p.add_argument("--index", type=int, default=0)
    p.add_argument("--parent-run-id", required=True)
    p.add_argument("--tracking-uri", required=True)
    p.set_defaults(func=cmd_search_worker)

    p = sub.add_parser("ui", help="serve the MLflow UI on the project's tracking store")
    p.add_argument("--study", default=SearchConfig().study, help="print the address of this study's runs table")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--auth", action="store_true",
                   help="MLflow's basic-auth app also on localhost (always on for any other HOST)")  # fmt: skip
    p.set_defaults(func=cmd_ui)

    p = sub.add_parser("dashboard", help="optuna-dashboard on the study storage (any STORAGE form)")
    p.add_argument("--storage", help="Optuna storage URL (default sqlite:///<repo>/runs/optuna.db)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.set_defaults(func=cmd_dashboard)

    p = sub.add_parser("compare", help="overlay trial loss curves (from MLflow) and tabulate them")
    p.add_argument("--study", help="study name, or several comma-separated (default cae-search)")
    p.add_argument("--top", type=int, default=5, help="the k best trials by best validation MSE")
    p.add_argument("--trial-ids", help="explicit trial numbers, comma-separated")
    p.add_argument("--runs", help="explicit MLflow run ids, comma-separated")
    p.add_argument("--states", help="trial states to consider (default COMPLETE,PRUNED)")
    p.add_argument("--linear", action="store_true", help="linear instead of log y axis")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("report", help="write reports/<study>/search.md (retrains reference and best)")
    _add_search_flags(p)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("colorize", help="colorization from a study's best architecture, with a report")
    p.add_argument("--study", help="study whose best.json gives the architecture (default cae-search)")
    p.add_argument("--config", help="an experiment YAML instead of a study's best trial")
    p.add_argument(
        "--vivid", type=float, default=0.7,
        help="also score each variant with a chroma gain set on validation to reach this colourfulness (0: off)",
    )  # fmt: skip
    p.add_argument(
        "--variant", default="all", help="rgb, chroma, seed, chroma-warm, chroma-skips (comma-separated) or all"
    )
    _add_training_flags(p)
    p.set_defaults(func=cmd_colorize)

    p = sub.add_parser("colorize-search", help="search colorization from a study's best (study <study>-colorize)")
    _add_search_flags(p, config=None)
    p.add_argument("--final-epochs", type=int, help="train the front's models again this long (0: keep the trials')")
    p.set_defaults(func=cmd_colorize_search)

    p = sub.add_parser("bench", help="speed benchmarks into BENCHMARKS.md (resumable)")
    p.add_argument("--quick", action="store_true", help="a reduced version in a few minutes")
    p.add_argument("--data", help="CIFAR-10 source (default: auto)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("best", help="print the best trial of a study (best.json)")
    _add_search_flags(p)
    p.set_defaults(func=cmd_best)
    return parser


def _terminate(signum: int, frame: Any) -> None:
    # SIGTERM (kill, timeout, batch schedulers) takes the same graceful path as Ctrl-C: the running
    # trial is failed with its reason and MLflow runs are ended. Background jobs started from a
    # shell ignore SIGINT, so this is how they are stopped cleanly.
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main_thread else None
    try:
        return int(args.func(args) or 0)
    except CAEError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a full disk while writing outputs: one line, the folder named
        full = disk_full(err)
        if full is None:
            raise
        print(f"error: {full}; free some space, then run the same command again (it resumes)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)
