"""What each `cae` command does: read the flags into config, call one function, print the outcome.

The command line itself (flags, help) is :mod:`cae.cli`; these functions are what it dispatches to.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from typing import Any

from cae.config import ExperimentConfig, load_experiment
from cae.config_files import parse_assignment
from cae.errors import CAEError
from cae.schema import with_overrides
from cae.search_config import SearchConfig, load_search

# lazy: each command imports the modules it runs inside its function, so it loads only what it uses
# and the checks of cae.preflight answer bad input in about a second, before TensorFlow, MLflow or
# Optuna is imported (~15 s); the imports above cost nothing (cae.search_config loads them anyway).


EXPERIMENT_KEYS = {f.name for f in dataclasses.fields(ExperimentConfig)}  # data, model, train, seed, name


def _overrides(args: argparse.Namespace, prefix: str = "") -> dict[str, Any]:
    """Make variables / flags -> dotted config keys (``prefix`` = "experiment." for searches).

    One key names one value in every verb: ``SET="train.learning_rate=3e-4"`` means the same for
    `make train` and `make search` (``experiment.train.learning_rate`` is accepted for a search too).
    """
    out: dict[str, Any] = {}
    for flag, key in (("data", "data.source"), ("subset", "data.subset"), ("epochs", "train.epochs"), ("seed", "seed")):
        value = getattr(args, flag, None)
        if value is not None:
            out[prefix + key] = None if flag == "subset" and value == 0 else value  # SUBSET=0: the full split
    for text in getattr(args, "set", None) or []:
        key, value = parse_assignment(text)
        bare = key.removeprefix("experiment.")
        out[prefix + bare if bare.split(".")[0] in EXPERIMENT_KEYS else key] = value
    return out


def _given(args: argparse.Namespace, *flags: str) -> dict[str, Any]:
    """The search-level flags the user set (search config keys of the same names); the storage URL also
    from ``CAE_STORAGE``, how make passes it (a password in a command line shows in every process list)."""
    given = {flag: getattr(args, flag) for flag in flags if getattr(args, flag, None) is not None}
    if "storage" in flags and "storage" not in given and os.environ.get("CAE_STORAGE"):
        given["storage"] = os.environ["CAE_STORAGE"]
    return given


def cmd_train(args: argparse.Namespace) -> int:
    from cae.preflight import check_experiment

    config = load_experiment(args.config, {**_overrides(args), **({"name": args.study} if args.study else {})})
    config = check_experiment(config)  # before TensorFlow is imported: a bad input answers in a second
    from cae.hardware import configure_threads
    from cae.tracked_training import run_experiment
    from cae.tracking import Tracker

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
    print(f"MLflow run {run_id} in {tracker.shown}; outputs in {out}")
    return 0


def _search_config(args: argparse.Namespace) -> Any:
    overrides = {
        **_overrides(args, prefix="experiment."),
        **_given(args, "trials", "study", "storage", "engine", "workers", "timeout", "extend", "code_values"),
    }
    cfg = load_search(args.config, overrides)
    _refuse_sampled_keys(args, cfg)
    if cfg.engine == "keras-tuner" and getattr(args, "study", None) is None:
        # Its own study (MLflow experiment, runs/<study>/) so the engines can be compared side by side.
        cfg = with_overrides(cfg, {"study": f"{cfg.study}-kt"})
    return cfg


def _refuse_sampled_keys(args: argparse.Namespace, cfg: SearchConfig) -> None:
    """A SET key the study's space samples would be replaced by every trial's draw: one line, not a no-op."""
    from cae.space import load_space

    keys = [parse_assignment(text)[0].removeprefix("experiment.") for text in getattr(args, "set", None) or []]
    sampled = [k for k in keys if k in load_space(cfg.space, cfg.experiment).names] if keys else []
    if sampled:
        raise CAEError(
            f"SET {sampled[0]}: the study's space ({cfg.space}) samples it, so every trial would replace it; "
            "narrow its range in the space file instead"
        )


def cmd_search(args: argparse.Namespace) -> int:
    from cae.preflight import check_search

    cfg = check_search(_search_config(args))
    # TensorFlow from here on: every check above ran without it.
    if args.join:
        from cae.search.workers import join
        from cae.stages import task_for

        join(cfg, task_for(cfg.stage), index=args.index)
    else:
        from cae.stages import run_checked

        run_checked(cfg)
    return 0


def cmd_search_worker(args: argparse.Namespace) -> int:
    from cae.search.workers import worker_main
    from cae.stages import task_for

    worker_main(task_for, args.index, args.parent_run_id)
    return 0


def cmd_best(args: argparse.Namespace) -> int:
    import json

    from cae.search.best import read_best
    from cae.search.summary import summary_lines

    record = read_best(args.study or _search_config(args).study)
    print(json.dumps(record, indent=2) if args.json else "\n".join(summary_lines(record)))
    return 0


def cmd_studies(args: argparse.Namespace) -> int:
    from cae.search.summary import studies_table

    print(studies_table(load_search(None, _given(args, "storage"))))
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    """Forget a study: its Optuna trials, its MLflow experiment (kept in MLflow's trash), its registered
    model and runs/<study>/; asked first (``--yes`` skips the question), refused while trials run."""
    from cae.search.summary import delete

    cfg = load_search(None, {"study": args.study, **_given(args, "storage")})
    if not args.yes:
        if not sys.stdin.isatty():
            raise CAEError(f"delete study {cfg.study!r} and everything it made? say so with YES=1 (--yes)")
        answer = input(f"delete study {cfg.study!r}: its trials, MLflow experiment, registered model and runs/"
                       f"{cfg.study}/? [y/N] ")  # fmt: skip
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted")
            return 1
    print(delete(cfg, force=args.force))
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    from cae.ui import serve

    return serve(args.study, args.host, args.port, auth=args.auth)


def cmd_dashboard(args: argparse.Namespace) -> int:
    from cae.dashboard import serve

    return serve(_given(args, "storage").get("storage"), args.host, args.port, auth=args.auth)


def cmd_compare(args: argparse.Namespace) -> int:
    from cae.compare import compare, format_table

    def split(text: str | None) -> list[str]:
        return [t.strip() for t in (text or "").split(",") if t.strip()]

    try:
        trial_ids = [int(t) for t in split(args.trial_ids)]
    except ValueError:
        raise CAEError(f"TRIAL_IDS must be comma-separated trial numbers, got {args.trial_ids!r}") from None
    rows, png, csv_path = compare(
        split(args.study) or [SearchConfig().study],
        top=args.top,
        trial_ids=trial_ids,
        run_ids=split(args.runs),
        states=[s.upper() for s in split(args.states)] or ["COMPLETE", "PRUNED"],
        log_y=not args.linear,
    )
    print(format_table(rows))
    print(f"\nplot: {png}\ntable: {csv_path}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from cae.report.build import build_report

    cfg = _search_config(args)
    data = {k: v for k, v in _overrides(args).items() if k in ("data.source", "data.subset", "seed")}
    print(f"wrote {build_report(cfg, epochs=args.epochs, data=data)}")
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from cae.report.publish import publish_study

    files = publish_study(args.study)
    print(f"published {len(files)} file(s) of study {args.study!r} to results/{args.study}/ (tracked: commit them)")
    return 0


def cmd_colorize(args: argparse.Namespace) -> int:
    from cae.colorize.variants import check_variants, default_variants, source_architecture
    from cae.preflight import check_experiment

    source = source_architecture(args.study, args.config)
    variants = default_variants(source[0]) if args.variant == "all" else [v.strip() for v in args.variant.split(",")]
    check_variants(list(variants), source[0])  # before TensorFlow: a wrong VARIANT is said in a second
    check_experiment(load_experiment(None, _overrides(args)))  # DATA= and the other flags, likewise
    from cae.colorize.from_best import colorize

    overrides = _overrides(args)
    report = colorize(variants=variants, overrides=overrides, vivid=args.vivid or None, source=source,
                      config_path=args.config)  # fmt: skip
    print(f"wrote {report}")
    return 0


def cmd_colorize_search(args: argparse.Namespace) -> int:
    from cae.colorize.search import colorize_search

    overrides = {
        **_overrides(args, prefix="experiment."),
        **_given(args, "trials", "storage", "engine", "workers", "timeout", "final_epochs"),
    }
    if args.study and args.source_config:
        raise CAEError("colorize-search starts from STUDY's best or from FROM=<experiment yaml>, not both")
    source = args.study or SearchConfig().study
    print(f"wrote {colorize_search(args.config, source, overrides, source_config=args.source_config)}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from cae.bench.run import run_bench
    from cae.search.storage import storage_url

    live = None
    if args.study:
        if args.plan != "replay":
            raise CAEError("a live study (STUDY=) is shown beside the replay only: make bench PLAN=replay STUDY=...")
        cfg = load_search(None, {"study": args.study, **_given(args, "storage")})
        live = (cfg.study, storage_url(cfg))
    print(f"wrote {run_bench('quick' if args.quick else args.plan, args.data, live)}")
    return 0
