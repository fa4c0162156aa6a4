"""`make bench`: how fast the harness trains and searches, side by side with the alternatives.

Every figure is a median of repeated runs with min and max, and every ratio compares numbers
measured in the same run. Results accumulate in ``results/bench/<mode>.json`` as they are measured,
so a killed benchmark resumes where it stopped; ``BENCHMARKS.md`` is rewritten from that file.

1. Training throughput of the reference CAE: the harness's tf.data pipeline vs a bare
   ``model.fit`` on NumPy arrays (the seed notebook's way), batch sizes 32/128/512.
2. Search efficiency on a fixed budget: Optuna TPE + median pruning vs Optuna random search
   without pruning vs keras-tuner Hyperband, over several sampler seeds. The target is the best
   validation MSE unpruned random search reaches in its whole budget (median over seeds);
   time-to-target is wall time from the first trial's start, without a reference trial.
3. Worker scaling: trials per hour with 1 and 2 worker processes, identical trials.
4. Per-trial overhead of the harness (MLflow, storage, building) against the bare fit in it.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from cae.config import ExperimentConfig, SearchConfig
from cae.data import load_splits, make_dataset, to_unit
from cae.errors import CAEError
from cae.paths import ensure_dir, project_root, runs_dir, write_text_atomic
from cae.schema import from_dict, to_dict, with_overrides


@dataclass(frozen=True)
class Plan:
    mode: str
    images: int  # throughput: training images timed per epoch
    batch_sizes: tuple[int, ...]
    repeats: int
    search_subset: int
    search_trials: int
    search_epochs: int
    search_seeds: tuple[int, ...]
    scaling_trials: int
    scaling_repeats: int


FULL = Plan("full", 12000, (32, 128, 512), 5, 4000, 10, 4, (0, 1, 2), 6, 2)
QUICK = Plan("quick", 2400, (32, 128, 512), 3, 800, 4, 2, (0,), 4, 1)


def _median_row(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


class Store:
    """Measurements so far (results/bench/<mode>.json), written after each one."""

    def __init__(self, path: Path):
        self.path = path
        self.data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}

    def get_or_measure(self, key: str, measure: Callable[[], Any]) -> Any:
        if key not in self.data:
            print(f"[bench] measuring {key} ...", flush=True)
            self.data[key] = measure()
            write_text_atomic(self.path, json.dumps(self.data, indent=1))
        return self.data[key]


# --------------------------------------------------------------------------------------------
# 1. Throughput


def _epoch_seconds(fit: Callable[[], Any], repeats: int) -> list[float]:
    fit()  # warm-up: traces the train step and fills caches
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fit()
        times.append(time.perf_counter() - start)
    return times


def _element_shuffle_dataset(images: np.ndarray, batch_size: int) -> Any:
    """The textbook alternative: slice images into elements, shuffle them, batch, convert."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices(images).shuffle(len(images), seed=0, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(lambda b: (tf.cast(b, tf.float32) / 255.0,) * 2, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def throughput(plan: Plan, source: str | None, store: Store) -> dict[str, Any]:
    """Seconds per epoch of the reference CAE for each input path, interleaved repeat by repeat."""
    import keras

    from cae.train import build_model

    splits = load_splits(source, 42)
    images = splits.x_train[: plan.images]
    x = to_unit(images)  # the seed notebook: float32 arrays in memory
    config = ExperimentConfig()
    out: dict[str, Any] = {"images": len(images), "data_source": splits.data_source}
    for bs in plan.batch_sizes:

        def measure(bs: int = bs) -> dict[str, list[float]]:
            keras.backend.clear_session()
            fits: dict[str, Callable[[], Any]] = {}
            inputs = {
                "harness": make_dataset(images, bs, shuffle=True, seed=0),
                "tf.data element shuffle": _element_shuffle_dataset(images, bs),
            }
            for name, ds in inputs.items():
                model = build_model(config, splits)
                model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
                fits[name] = lambda model=model, ds=ds: model.fit(ds, epochs=1, verbose=0, shuffle=False)
            # XLA: reported ~3× slower than plain Keras for this model on a 2-core CPU; measured here.
            xla = build_model(config, splits)
            xla.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse", jit_compile=True)
            fits["harness + XLA"] = lambda: xla.fit(inputs["harness"], epochs=1, verbose=0, shuffle=False)
            bare_model = build_model(config, splits)
            bare_model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
            fits["bare fit"] = lambda: bare_model.fit(x, x, batch_size=bs, epochs=1, verbose=0, shuffle=True)
            for fit in fits.values():
                fit()  # warm-up: traces the train step and fills caches
            times: dict[str, list[float]] = {name: [] for name in fits}
            for _ in range(plan.repeats):  # interleaved, so drift in machine load hits all alike
                for name, fit in fits.items():
                    start = time.perf_counter()
                    fit()
                    times[name].append(time.perf_counter() - start)
            return times

        out[f"bs{bs}"] = store.get_or_measure(f"throughput/bs{bs}", measure)
    return out


# --------------------------------------------------------------------------------------------
# 2. Search efficiency, 3. worker scaling, 4. overhead


def _bench_env(name: str) -> tuple[str, str]:
    """A storage and an MLflow store of the benchmark's own, under runs/bench/ (real ones)."""
    d = ensure_dir(runs_dir() / "bench")
    return f"sqlite:///{d / 'optuna.db'}", f"sqlite:///{d / 'mlflow.db'}"


def _search_cfg(plan: Plan, study: str, source: str | None, **overrides: Any) -> SearchConfig:
    storage, _ = _bench_env(study)
    base = from_dict(SearchConfig, yaml.safe_load((project_root() / "experiments/search.yaml").read_text()))
    return with_overrides(base, {
        "study": study, "storage": storage, "trials": plan.search_trials, "enqueue_reference": False,
        "experiment.data.source": source, "experiment.data.subset": plan.search_subset,
        "experiment.train.epochs": plan.search_epochs, **overrides,
    })  # fmt: skip


def _trial_timeline(study: str) -> list[tuple[float, float]]:
    """(wall seconds since the first trial started, best val so far) at each trial's end, from MLflow."""
    from cae.tracking import Tracker

    _, uri = _bench_env(study)
    tracker = Tracker(uri)
    parent = tracker.find_study_parent(study)
    runs = sorted(tracker.child_runs(parent, study), key=lambda r: r.info.start_time)
    best, out = float("inf"), []
    for r in runs:
        elapsed = ((r.info.end_time or r.info.start_time) - runs[0].info.start_time) / 1000
        value = r.data.metrics.get("best_val_loss")
        if value is not None and r.data.tags.get("trial_state") in ("COMPLETE", "PRUNED"):
            best = min(best, value)
        out.append((elapsed, best))
    return out


def search_efficiency(plan: Plan, source: str | None, store: Store) -> dict[str, Any]:
    from cae.search.run import run_search
    from cae.search.tuner import run_tuner

    strategies: dict[str, Callable[[int], None]] = {}

    def optuna_strategy(name: str, sampler: str, pruner: str) -> Callable[[int], None]:
        def run(seed: int) -> None:
            cfg = _search_cfg(plan, f"bench-{name}-s{seed}", source, **{
                "sampler.name": sampler, "pruner.name": pruner, "experiment.seed": 42, "sampler.n_startup_trials": 3,
                "pruner.n_startup_trials": 2, "pruner.n_warmup_steps": 1,
            })  # fmt: skip
            # The sampler seed differs per repetition; the data split stays the same (seed 42).
            cfg = with_overrides(cfg, {"sampler.seed": seed})
            run_search(cfg)

        return run

    strategies["tpe+pruning"] = optuna_strategy("tpe", "tpe", "median")
    strategies["random"] = optuna_strategy("random", "random", "none")

    def hyperband(seed: int) -> None:
        cfg = _search_cfg(plan, f"bench-kt-hyperband-s{seed}", source, engine="keras-tuner", tuner="hyperband")
        run_tuner(with_overrides(cfg, {"sampler.seed": seed}))

    strategies["keras-tuner hyperband"] = hyperband
    out: dict[str, Any] = {}
    _, uri = _bench_env("")
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        for seed in plan.search_seeds:
            for name, run in strategies.items():
                study = {"tpe+pruning": "bench-tpe", "random": "bench-random",
                         "keras-tuner hyperband": "bench-kt-hyperband"}[name] + f"-s{seed}"  # fmt: skip

                def measure(run: Callable[[int], None] = run, seed: int = seed, study: str = study) -> Any:
                    run(seed)
                    return _trial_timeline(study)

                out.setdefault(name, {})[str(seed)] = store.get_or_measure(f"search/{name}/seed{seed}", measure)
    finally:
        if previous is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous
    return out


def _scaling_space() -> Path:
    """Identical trials (the reference; only the learning rate varies) so only workers differ."""
    path = ensure_dir(runs_dir() / "bench") / "scaling-space.yaml"
    path.write_text("params:\n  train.learning_rate: {choices: [0.001, 0.0011, 0.0012, 0.0013]}\n")
    return path


def worker_scaling(plan: Plan, source: str | None, store: Store) -> dict[str, Any]:
    out: dict[str, Any] = {}
    _, uri = _bench_env("")
    for workers in (1, 2):

        def measure(workers: int = workers) -> list[float]:
            times = []
            for rep in range(plan.scaling_repeats):
                study = f"bench-scaling-w{workers}-r{rep}-{time.time_ns()}"
                cfg = _search_cfg(
                    plan,
                    study,
                    source,
                    space=str(_scaling_space()),
                    trials=plan.scaling_trials,
                    workers=workers,
                    **{"pruner.name": "none"},
                )
                path = ensure_dir(runs_dir() / "bench") / f"{study}.yaml"
                path.write_text(yaml.safe_dump(to_dict(cfg)))
                env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
                start = time.perf_counter()
                # A fresh process per measurement, as a user runs it (imports included).
                done = subprocess.run(
                    [sys.executable, "-m", "cae", "search", str(path)], env=env, stdout=subprocess.DEVNULL
                )
                if done.returncode != 0:
                    raise CAEError(f"the {workers}-worker scaling search failed (exit {done.returncode}); see above")
                times.append(time.perf_counter() - start)
                path.unlink()
            return times

        out[str(workers)] = store.get_or_measure(f"scaling/workers{workers}", measure)
    return out


def gpu(plan: Plan, source: str | None, store: Store) -> dict[str, Any] | None:
    """On a GPU: harness throughput with mixed precision off and on, and a full-data epoch."""
    import keras
    import tensorflow as tf

    from cae.train import build_model

    if not tf.config.list_physical_devices("GPU"):
        return None
    splits = load_splits(source, 42)
    config = ExperimentConfig()

    def measure(policy: str) -> dict[str, Any]:
        keras.mixed_precision.set_global_policy(policy)
        try:
            out: dict[str, Any] = {}
            for bs in (128, 512):
                keras.backend.clear_session()
                model = build_model(config, splits)
                model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
                ds = make_dataset(splits.x_train[: plan.images], bs, shuffle=True, seed=0)
                out[f"bs{bs}"] = _epoch_seconds(lambda m=model, d=ds: m.fit(d, epochs=1, verbose=0), plan.repeats)
            full = make_dataset(splits.x_train, 128, shuffle=True, seed=0)
            out["full_epoch_bs128"] = _epoch_seconds(lambda: model.fit(full, epochs=1, verbose=0), 1)
            return out
        finally:
            keras.mixed_precision.set_global_policy("float32")

    device = tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[0])
    return {
        "device": device.get("device_name", "GPU"),
        "images": plan.images,
        "float32": store.get_or_measure("gpu/float32", lambda: measure("float32")),
        "mixed_float16": store.get_or_measure("gpu/mixed_float16", lambda: measure("mixed_float16")),
    }


def overhead(plan: Plan, source: str | None, store: Store) -> dict[str, Any]:
    """Trial wall time through the objective vs the bare build + fit of the same config."""
    import keras

    from cae.search.run import run_search
    from cae.train import build_model

    def measure() -> dict[str, Any]:
        storage, uri = _bench_env("")
        os.environ["MLFLOW_TRACKING_URI"] = uri
        rows = []
        for rep in range(3):
            study = f"bench-overhead-{rep}-{time.time_ns()}"
            cfg = _search_cfg(plan, study, source, space=str(_scaling_space()), trials=1, **{"pruner.name": "none"})
            run_search(cfg)
            import optuna

            trial = optuna.load_study(study_name=study, storage=storage).trials[0]
            trial_seconds = (trial.datetime_complete - trial.datetime_start).total_seconds()
            config = with_overrides(cfg.experiment, {"train.learning_rate": trial.params["train.learning_rate"]})
            splits = load_splits(config.data.source, config.seed, config.data.subset)
            keras.backend.clear_session()
            start = time.perf_counter()
            model = build_model(config, splits)
            build = time.perf_counter() - start
            model.compile(optimizer=keras.optimizers.Adam(config.train.learning_rate), loss="mse")
            x, v = to_unit(splits.x_train), to_unit(splits.x_val)
            start = time.perf_counter()
            model.fit(
                x, x, batch_size=config.train.batch_size, epochs=config.train.epochs, validation_data=(v, v), verbose=0
            )
            bare = time.perf_counter() - start
            rows.append({"trial_seconds": trial_seconds, "bare_fit_seconds": bare, "build_seconds": build})
        return {"rows": rows}

    return store.get_or_measure("overhead", measure)


# --------------------------------------------------------------------------------------------
# Report


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem = int(Path("/proc/meminfo").read_text().split()[1]) / 2**20
    except OSError:
        mem = float("nan")
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return (
        f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, {'GPU: ' + str(len(gpus)) if gpus else 'no GPU'}; "
        f"Python {platform.python_version()}, TensorFlow {tf.__version__}"
    )


def time_to_target(timeline: list[tuple[float, float]], target: float) -> float:
    return next((t for t, best in timeline if best <= target), float("inf"))


def plot_progress(search: dict[str, Any], target: float, path: Path) -> None:
    from cae.plots import plt, save

    fig, ax = plt.subplots(figsize=(9, 5))
    colours = {"tpe+pruning": "tab:blue", "random": "tab:orange", "keras-tuner hyperband": "tab:green"}
    for name, by_seed in search.items():
        for i, timeline in enumerate(by_seed.values()):
            xs = [t / 60 for t, _ in timeline]
            ys = [b for _, b in timeline]
            ax.step(xs, ys, where="post", color=colours.get(name), alpha=0.8, label=name if i == 0 else None)
    ax.axhline(target, color="k", ls=":", label=f"target {target:.5f} (random's best, median over seeds)")
    ax.set(
        xlabel="wall time (minutes)",
        ylabel="best validation MSE so far",
        yscale="log",
        title="Search progress per strategy (each line one sampler seed)",
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    save(fig, path)


NOTES_MARKER = "<!-- notes: kept when make bench rewrites this file -->"


def write_markdown(
    plan: Plan, data: dict[str, Any], out: Path, command: str, wall: float, figures: Path | None = None
) -> Path:
    lines = [
        "# Benchmarks",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} with `{command}` ({plan.mode}, {wall / 60:.0f} min) on: {_machine()}.",
        "Every figure is the median of repeated runs (min–max in brackets); ratios compare numbers from the same "
        f"run. Raw numbers: `results/bench/{plan.mode}.json`.",
        "",
    ]
    tp = data.get("throughput")
    if tp:
        lines += [
            f"## 1. Training throughput, reference CAE ({tp['images']:,} training images per timed epoch, "
            f"data `{tp['data_source']}`)",
            "",
            "| batch | harness img/s | tf.data element shuffle img/s | harness + XLA img/s | bare fit img/s "
            "| harness / bare | s per 48k epoch (harness) |",
            "|---|---|---|---|---|---|---|",
        ]
        for key, row in tp.items():
            if not key.startswith("bs"):
                continue
            rate = {name: [tp["images"] / s for s in times] for name, times in row.items()}
            med = {name: statistics.median(r) for name, r in rate.items()}
            cell = {name: f"{med[name]:,.0f} ({min(r):,.0f}–{max(r):,.0f})" for name, r in rate.items()}
            lines.append(
                f"| {key[2:]} | {cell['harness']} | {cell['tf.data element shuffle']} | {cell['harness + XLA']} "
                f"| {cell['bare fit']} "
                f"| {med['harness'] / med['bare fit']:.2f} | {48000 / med['harness']:.1f} |"
            )
        lines += ["", "Goal: the harness no more than 5 % slower than the bare fit (ratio ≥ 0.95).", ""]
    search = data.get("search")
    if search:
        random_best = [tl[-1][1] for tl in search.get("random", {}).values() if tl]
        target = statistics.median(random_best) if random_best else float("nan")
        lines += [
            f"## 2. Search efficiency ({plan.search_trials} trials × {plan.search_epochs} epochs, subset "
            f"{plan.search_subset:,}, sampler seeds {list(plan.search_seeds)}, no reference trial)",
            "",
            f"Target: validation MSE {target:.6f}, the best that unpruned random search reached in its whole budget "
            "(median over seeds). Time is wall time from the first trial's start to the end of the first trial at "
            "or below the target.",
            "",
            "| strategy | time to target, min (median) | reached in | best val MSE in budget (median) "
            "| total wall time, min |",
            "|---|---|---|---|---|",
        ]
        medians = {}
        for name, by_seed in search.items():
            ttt = [time_to_target(tl, target) / 60 for tl in by_seed.values()]
            finite = [t for t in ttt if np.isfinite(t)]
            medians[name] = statistics.median(ttt)
            best = statistics.median(tl[-1][1] for tl in by_seed.values())
            total = statistics.median(tl[-1][0] / 60 for tl in by_seed.values())
            lines.append(
                f"| {name} | {medians[name]:.1f} | {len(finite)}/{len(ttt)} seeds | {best:.6f} | {total:.1f} |"
            )
        if "tpe+pruning" in medians and "random" in medians and medians["random"] > 0:
            ratio = medians["tpe+pruning"] / medians["random"]
            lines += [
                "",
                f"TPE + pruning needed {ratio:.0%} of random search's time to the target "
                f"(goal ≤ 25 %: {'met' if ratio <= 0.25 else 'missed'}).",
            ]
        png = ensure_dir(figures or project_root() / "results" / "bench") / f"search_progress-{plan.mode}.png"
        plot_progress(search, target, png)
        lines += ["", f"![search progress]({os.path.relpath(png, out.parent)})", ""]
    sc = data.get("scaling")
    if sc:
        rates = {w: [plan.scaling_trials / (s / 3600) for s in times] for w, times in sc.items()}
        r1, r2 = statistics.median(rates["1"]), statistics.median(rates["2"])
        lines += [
            f"## 3. Worker scaling ({plan.scaling_trials} identical trials per measurement, "
            "threads split between workers)",
            "",
            "| workers | trials per hour | speed-up |",
            "|---|---|---|",
            f"| 1 | {r1:.0f} ({min(rates['1']):.0f}–{max(rates['1']):.0f}) | 1.00 |",
            f"| 2 | {r2:.0f} ({min(rates['2']):.0f}–{max(rates['2']):.0f}) | {r2 / r1:.2f} |",
            "",
            f"Goal ≥ 1.6×: {'met' if r2 / r1 >= 1.6 else 'missed'}.",
            "",
        ]
    oh = data.get("overhead")
    if oh:
        fractions = [1 - r["bare_fit_seconds"] / r["trial_seconds"] for r in oh["rows"]]
        builds = [r["build_seconds"] / r["trial_seconds"] for r in oh["rows"]]
        lines += [
            "## 4. Per-trial overhead (a reference trial through the objective vs a bare build + fit of it)",
            "",
            "| trial s | bare fit s | overhead share | of which model building |",
            "|---|---|---|---|",
            *[
                f"| {r['trial_seconds']:.1f} | {r['bare_fit_seconds']:.1f} | {f:.1%} | {b:.1%} |"
                for r, f, b in zip(oh["rows"], fractions, builds, strict=True)
            ],
            "",
            f"Median overhead {statistics.median(fractions):.1%} of trial time (goal ≤ 5 %): MLflow logging, "
            "storage writes, pruning reports, data pipeline set-up and model building together.",
            "",
        ]
    g = data.get("gpu")
    if g:
        lines += [
            f"## 5. GPU ({g['device']}), reference CAE, {g['images']:,} images per timed epoch",
            "",
            "| precision | bs 128 img/s | bs 512 img/s | full 48k epoch (bs 128), s |",
            "|---|---|---|---|",
        ]
        for policy in ("float32", "mixed_float16"):
            m = g[policy]
            rate = {bs: statistics.median(g["images"] / t for t in m[f"bs{bs}"]) for bs in (128, 512)}
            lines.append(f"| {policy} | {rate[128]:,.0f} | {rate[512]:,.0f} | {m['full_epoch_bs128'][0]:.1f} |")
        lines.append("")
    else:
        lines += ["## 5. GPU", "", "Not measured: this machine has no GPU (`make bench` measures it where one is).", ""]
    # Hand-written analysis below the marker (why a goal was missed, what limits it) survives a rerun.
    previous = out.read_text() if out.exists() else ""
    if NOTES_MARKER in previous:
        lines += [NOTES_MARKER + previous.split(NOTES_MARKER, 1)[1].rstrip("\n")]
    write_text_atomic(out, "\n".join(lines) + "\n")
    return out


def run_bench(quick: bool, source: str | None) -> Path:
    plan = QUICK if quick else FULL
    store = Store(ensure_dir(project_root() / "results" / "bench") / f"{plan.mode}.json")
    start = time.perf_counter()
    data = {
        "throughput": throughput(plan, source, store),
        "overhead": overhead(plan, source, store),
        "scaling": worker_scaling(plan, source, store),
        "search": search_efficiency(plan, source, store),
        "gpu": gpu(plan, source, store),
    }
    command = "make bench" + (" QUICK=1" if quick else "") + (f" DATA={source}" if source else "")
    # The quick run is a smoke test: it never overwrites the full benchmark's BENCHMARKS.md.
    out = project_root() / "BENCHMARKS.md" if not quick else project_root() / "results" / "bench" / "quick.md"
    return write_markdown(plan, data, out, command, time.perf_counter() - start)
