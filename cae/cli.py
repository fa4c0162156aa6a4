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

from cae.commands import (  # noqa: E402
    cmd_bench,
    cmd_best,
    cmd_colorize,
    cmd_colorize_search,
    cmd_compare,
    cmd_dashboard,
    cmd_delete,
    cmd_publish,
    cmd_report,
    cmd_search,
    cmd_search_worker,
    cmd_studies,
    cmd_train,
    cmd_ui,
)
from cae.errors import (  # noqa: E402
    CAEError,
    Interrupted,
    causes,
    clear_stop,
    disk_full_message,
    first_line,
    no_space,
    request_stop,
)
from cae.paths import check_study_name  # noqa: E402
from cae.search_config import SearchConfig  # noqa: E402
from cae.urls import shown  # noqa: E402


def _add_training_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", help="CIFAR-10 source: path, 'keras' or 'sample' (default: auto)")
    p.add_argument("--subset", type=int, help="N training images (and N/8 val/test); 0 = the full split")
    p.add_argument("--epochs", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override any config key, e.g. train.learning_rate=3e-4"
    )


def _add_search_flags(p: argparse.ArgumentParser, config: str | None = "experiments/search.yaml") -> None:
    p.add_argument("config", nargs="?", default=config)
    p.add_argument("--study", help="the study (for colorize-search: the reconstruction study it starts from)")
    p.add_argument("--trials", type=int, help="finished trials the study should hold in total")
    p.add_argument("--code", dest="code_values", type=int, help="the code size the study compares (values)")
    p.add_argument("--storage", help="Optuna storage URL (default sqlite:///<repo>/runs/optuna.db)")
    p.add_argument("--engine", choices=["optuna", "keras-tuner"])
    p.add_argument("--workers", type=int)
    p.add_argument("--timeout", type=float, help="seconds for this call")
    p.add_argument(
        "--extend",
        action="store_true",
        default=None,
        help="resume the study although its data, subset, epochs or space differ (recorded)",
    )
    _add_training_flags(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cae", description=__doc__.splitlines()[0])
    # The metavar keeps internal commands (search-worker, started by `cae search --workers N`) out of the help.
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _training_commands(sub)
    _viewing_commands(sub)
    return parser


def _training_commands(sub: Any) -> None:

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

    p = sub.add_parser("search-worker")
    p.add_argument("--index", type=int, default=0)
    p.add_argument("--parent-run-id", required=True)
    p.set_defaults(func=cmd_search_worker)

    p = sub.add_parser("colorize", help="colorization from a study's best architecture, with a report")
    p.add_argument("--study", help="study whose best.json gives the architecture (default cae-search)")
    p.add_argument("--config", help="an experiment YAML instead of a study's best trial")
    p.add_argument(
        "--vivid",
        type=float,
        default=0.7,
        help="also score each variant with a chroma gain set on validation to reach this colourfulness (0: off)",
    )
    p.add_argument(
        "--variant",
        default="all",
        help="rgb, chroma, seed, chroma-warm, chroma-skips, chroma-semantic, chroma-oracle, conv (comma-separated) or "
        "all (rgb, chroma, seed; and conv for a source with a dense code)",
    )
    _add_training_flags(p)
    p.set_defaults(func=cmd_colorize)

    p = sub.add_parser("colorize-search", help="search colorization from a study's best (study <study>-colorize)")
    _add_search_flags(p, config=None)
    p.add_argument("--final-epochs", type=int, help="train the front's models again this long (0: keep the trials')")
    p.add_argument(
        "--from",
        dest="source_config",
        metavar="EXPERIMENT_YAML",
        help="start from this architecture instead of the study's best (study <its name>-colorize)",
    )
    p.set_defaults(func=cmd_colorize_search)

    p = sub.add_parser("bench", help="benchmarks into BENCHMARKS.md: training speed, search strategies (resumable)")
    p.add_argument("--quick", action="store_true", help="a reduced version in a few minutes (--plan quick)")
    p.add_argument(
        "--plan",
        choices=["full", "quick", "table", "replay"],
        default="full",
        help="full: training speed into BENCHMARKS.md; table: record the learning-curve table "
        "results/bench/curves.csv (hours, resumable); replay: search strategies replayed over it, 50 seeds each "
        "(results/bench/replay.md, minutes)",
    )
    p.add_argument("--data", help="CIFAR-10 source (default: auto)")
    p.add_argument("--study", help="replay: a live study on the table's data, beside its own strategy's replay")
    p.add_argument("--storage", help="Optuna storage URL of --study (default sqlite:///<repo>/runs/optuna.db)")
    p.set_defaults(func=cmd_bench)


def _viewing_commands(sub: Any) -> None:
    p = sub.add_parser("ui", help="serve the MLflow UI on the project's tracking store")
    p.add_argument("--study", default=SearchConfig().study, help="print the address of this study's runs table")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument(
        "--auth", action="store_true", help="MLflow's basic-auth app also on localhost (always on for any other HOST)"
    )
    p.set_defaults(func=cmd_ui)

    p = sub.add_parser("dashboard", help="optuna-dashboard on the study storage (any STORAGE form)")
    p.add_argument("--storage", help="Optuna storage URL (default sqlite:///<repo>/runs/optuna.db)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument(
        "--auth",
        action="store_true",
        help="require the `make ui` login also on localhost (always on for any other HOST)",
    )
    p.set_defaults(func=cmd_dashboard)

    p = sub.add_parser("compare", help="overlay trial loss curves (from MLflow) and tabulate them")
    p.add_argument("--study", help="study name, or several comma-separated (default cae-search)")
    p.add_argument("--top", type=int, default=5, help="the k best trials (val MSE; colorization: val PSNR)")
    p.add_argument("--trial-ids", help="explicit trial numbers, comma-separated")
    p.add_argument("--runs", help="explicit MLflow run ids, comma-separated")
    p.add_argument("--states", help="trial states to consider (default COMPLETE,PRUNED)")
    p.add_argument("--linear", action="store_true", help="linear instead of log y axis")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("report", help="write runs/<study>/report/search.md: the best against the baselines")
    _add_search_flags(p)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "delete", help="delete a study: its trials, MLflow experiment, registered model and runs/<study>/"
    )
    p.add_argument("--study", required=True, help="the study to delete (no default: say which)")
    p.add_argument("--storage", help="Optuna storage URL (default sqlite:///<repo>/runs/optuna.db)")
    p.add_argument("--yes", action="store_true", help="do not ask first")
    p.add_argument("--force", action="store_true", help="also while trials of it are running")
    p.set_defaults(func=cmd_delete)

    p = sub.add_parser("best", help="the best trial of a study, in a few lines (--json: all of best.json)")
    _add_search_flags(p)
    p.add_argument("--json", action="store_true", help="the whole record, as JSON")
    p.set_defaults(func=cmd_best)

    p = sub.add_parser("publish", help="copy runs/<study>/report/ and best.json to results/<study>/ (tracked files)")
    p.add_argument("--study", required=True, help="the study whose reports become this project's published results")
    p.set_defaults(func=cmd_publish)

    p = sub.add_parser("studies", help="the studies of the storage: trials by state, best, test PSNR")
    p.add_argument("--storage", help="Optuna storage URL (default sqlite:///<repo>/runs/optuna.db)")
    p.set_defaults(func=cmd_studies)


# SIGTERM (kill, timeout, batch schedulers) and SIGHUP (the terminal closed, ssh dropped) take the same
# graceful path as Ctrl-C: the running trial is failed with its reason and queued again, and MLflow runs
# are ended. Background jobs started from a shell ignore SIGINT, so this is how they are stopped cleanly.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _terminate(signum: int, frame: Any) -> None:
    # The flag also stops training at the next epoch should this KeyboardInterrupt be swallowed
    # (see cae.errors.request_stop).
    request_stop(signal.Signals(signum).name)
    raise KeyboardInterrupt


def _check_study_names(args: argparse.Namespace) -> None:
    """Every command's ``--study`` (compare's comma-separated list too), checked once before it runs:
    a name becomes runs/<study>/ and runs/<study>/report/, so `/abs` or `../x` must not reach any command."""
    text = getattr(args, "study", None)
    if text is not None:
        names = [t.strip() for t in text.split(",") if t.strip()] if args.command == "compare" else [text]
        for name in names:
            check_study_name(name)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.signal(sig, _terminate) for sig in STOP_SIGNALS} if in_main_thread else {}
    previous_hook, threading.excepthook = threading.excepthook, _thread_died
    try:
        _check_study_names(args)
        return int(args.func(args) or 0)
    except CAEError as err:
        message = shown(str(err))  # a URL in a message never shows its password
        # Messages quote values through cae.errors.quoted; this bounds any that slipped past it.
        print(f"error: {message[:2000]}{'…' if len(message) > 2000 else ''}", file=sys.stderr)
        return 2
    except OSError as err:  # a full disk while writing outputs: one line, the folder named
        full = no_space(err)
        if full is None:
            raise
        print(f"error: {disk_full_message(full)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:  # one line: the command's own (what was kept, how to go on), else this
        print(f"\n{err}" if isinstance(err, Interrupted) else "\ninterrupted", file=sys.stderr)
        return 130
    finally:
        threading.excepthook = previous_hook
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        clear_stop()


def _thread_died(args: threading.ExceptHookArgs) -> None:
    """A background thread that dies (Optuna's heartbeat on a full disk or a dropped database) says one
    line, not a traceback: the main thread meets the same fault and ends the command with its own line."""
    if args.exc_type is SystemExit:
        return
    root = list(causes(args.exc_value))[-1] if args.exc_value is not None else args.exc_type()
    name = args.thread.name if args.thread is not None else "a background thread"
    print(f"note: {name} stopped: {first_line(shown(str(root)) or type(root).__name__)}", file=sys.stderr, flush=True)
