"""The learning-curve table (`make bench PLAN=table`): configurations of the default space, trained
once and recorded epoch by epoch, so that search strategies can be replayed over it many times
(:mod:`cae.bench.replay`), as LCBench and NAS-Bench-201 do for their spaces.

Configurations are drawn with Optuna's ``RandomSampler`` (seeded) from the default study's space at
its code size, after the study's enqueued points; the first ``repeats`` drawn configurations are
trained a second time with another seed, so the table says how far two runs of one configuration
differ. Each row of ``results/bench/curves.csv`` is one configuration, seed and epoch: its
parameters, validation MSE, margin over PCA at the code size (dB) and the epoch's seconds. Rows are
written when a configuration finishes; a configuration stopped part-way resumes from its last epoch
(Keras ``BackupAndRestore`` under ``runs/bench/table/``), so the command resumes after a kill.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cae.errors import CAEError
from cae.metrics import psnr_from_mse
from cae.paths import atomic_path, ensure_dir, project_root, resolve, runs_dir, write_text_atomic
from cae.report.locations import repo_relative
from cae.schema import with_overrides
from cae.search_config import SearchConfig, load_search
from cae.space import SearchSpace, load_space

BASE = "experiments/search.yaml"
FIELDS = ("config", "seed", "epoch", "val_mse", "val_margin_db", "train_mse", "seconds")


@dataclass(frozen=True)
class TablePlan:
    configs: int = 64  # drawn from the space (the enqueued points come on top)
    repeats: int = 8  # the first drawn configurations trained again with seed + 1
    # Per configuration, on a subset: the study's 20 epochs on 48,000 images would take the 73
    # configurations about two days on 2 cores (~2 min an epoch each); the report says so.
    epochs: int = 12
    subset: int | None = 4000  # training images (N/8 each for validation and test); None = the full split
    draw_seed: int = 0  # the RandomSampler's seed that draws the configurations


@dataclass(frozen=True)
class Entry:
    config: str  # "e0" for the study's enqueued point 0, "c000" ... for the drawn ones
    seed: int  # the training seed (weights, shuffling); the split stays the study's
    params: dict[str, Any]


def planned(cfg: SearchConfig, space: SearchSpace, plan: TablePlan) -> list[Entry]:
    """Every (configuration, seed) the table holds, in the order they are trained."""
    import optuna

    seed = cfg.experiment.seed
    enqueued = [space.point(with_overrides(cfg.experiment, change)) for change in cfg.enqueue]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=plan.draw_seed))
    drawn = [space.sample_optuna(study.ask()) for _ in range(plan.configs)]
    entries = [Entry(f"e{i}", seed, p) for i, p in enumerate(enqueued)]
    drawn_entries = [Entry(f"c{i:03d}", seed, p) for i, p in enumerate(drawn)]
    repeats = [Entry(e.config, seed + 1, e.params) for e in drawn_entries[: plan.repeats]]
    # The repeats come after the first 16 drawn ones: a table cut short still says how noisy it is.
    head = 2 * plan.repeats
    return [*entries, *drawn_entries[:head], *repeats, *drawn_entries[head:]]


def table_paths(folder: Path | None = None) -> tuple[Path, Path]:
    folder = folder or project_root() / "results" / "bench"
    return folder / "curves.csv", folder / "curves.json"


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The table's rows, numbers as numbers (parameters keep the space's types where they parse)."""
    if not path.exists():
        return []
    try:
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, csv.Error, UnicodeDecodeError) as err:
        raise CAEError(f"{path.name} cannot be read ({type(err).__name__}); restore it with git") from None
    out = []
    for i, row in enumerate(rows):
        try:
            parsed: dict[str, Any] = {k: _number(v) for k, v in row.items()}
            parsed["seed"], parsed["epoch"] = int(row["seed"]), int(row["epoch"])
            for key in ("val_mse", "val_margin_db", "train_mse", "seconds"):
                parsed[key] = float(row[key])
        except (KeyError, TypeError, ValueError):
            raise CAEError(f"{path.name}: row {i + 2} is damaged; restore the file with git") from None
        out.append(parsed)
    return out


def _number(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"True": True, "False": False}.get(text, text)


def _write_rows(path: Path, rows: list[dict[str, Any]], keys: list[str]) -> None:
    with atomic_path(path) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[*FIELDS, *keys])
        writer.writeheader()
        writer.writerows(rows)


def _meta(cfg: SearchConfig, plan: TablePlan, splits: Any, pca_psnr: float, space_path: Path) -> dict[str, Any]:
    return {
        "plan": asdict(plan),
        "space": repo_relative(space_path.resolve()),
        "space_digest": hashlib.sha256(space_path.read_bytes()).hexdigest()[:16],
        "code_values": cfg.code_values,
        "data_source": splits.data_source,
        "data_file": Path(splits.location).name,
        "data_digest": splits.digest,
        "split": list(splits.sizes),
        "split_seed": cfg.experiment.seed,
        "pca_val_psnr": round(pca_psnr, 4),
    }


def record_table(
    source: str | None, plan: TablePlan = TablePlan(), folder: Path | None = None, base: str = BASE, host: str = ""
) -> Path:
    """Train what ``results/bench/curves.csv`` lacks of ``plan``; returns the CSV's path."""
    from cae.baselines import pca_basis, pca_point
    from cae.data import load_splits
    from cae.fitting import TrainingDiverged, history_from_csv
    from cae.train import train_and_evaluate

    cfg = load_search(resolve(base))
    if cfg.code_values is None:
        raise CAEError(f"{base} names no code_values: the table is recorded at the default study's code size")
    space_path = resolve(cfg.space)
    space = load_space(space_path, cfg.experiment)
    splits = load_splits(source, cfg.experiment.seed, plan.subset)
    pca_psnr = pca_point(pca_basis(splits), splits.x_val, cfg.code_values).psnr
    csv_path, meta_path = table_paths(folder)
    meta = _meta(cfg, plan, splits, pca_psnr, space_path)
    if meta_path.exists():
        old = json.loads(meta_path.read_text())
        changed = [k for k in meta if old.get(k) != meta[k]]
        if changed:
            raise CAEError(
                f"{meta_path.name} was recorded with other settings ({', '.join(changed)}); move "
                "curves.csv and curves.json away to record a new table"
            )
    ensure_dir(csv_path.parent)
    # A half-trained configuration resumes only into the same plan, data and space.
    stamp = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:12]
    rows = read_rows(csv_path)
    done = {(r["config"], r["seed"]) for r in rows}
    entries = planned(cfg, space, plan)
    todo = [e for e in entries if (e.config, e.seed) not in done]
    print(
        f"[table] {len(entries) - len(todo)} of {len(entries)} configurations recorded; {len(todo)} to train "
        f"({plan.epochs} epochs on {splits.sizes[0]:,} images, code {cfg.code_values} values, PCA "
        f"{pca_psnr:.2f} dB on validation)",
        flush=True,
    )
    for n, entry in enumerate(todo, 1):
        config = with_overrides(
            space.apply(cfg.experiment, entry.params), {"seed": entry.seed, "train.epochs": plan.epochs}
        )
        workdir = runs_dir() / "bench" / "table" / stamp / f"{entry.config}-s{entry.seed}"
        timer = seconds_log(ensure_dir(workdir) / "seconds.json")
        started = time.perf_counter()
        try:
            result = train_and_evaluate(config, splits, callbacks=[timer], evaluate_test=False, workdir=workdir)
            history = result.history
        except TrainingDiverged:  # recorded as it went: the replay sees a trial that fails there
            history = history_from_csv(workdir / "history.csv")
        new = []
        for epoch, (train, val) in enumerate(zip(history["train_loss"], history["val_loss"], strict=True), 1):
            margin = psnr_from_mse(val) - pca_psnr if math.isfinite(val) and val > 0 else math.nan
            new.append(
                {
                    "config": entry.config,
                    "seed": entry.seed,
                    "epoch": epoch,
                    "val_mse": val,
                    "val_margin_db": round(margin, 4),
                    "train_mse": train,
                    "seconds": round(timer.seconds.get(epoch, math.nan), 2),
                    **entry.params,
                }
            )
        rows = read_rows(csv_path) + new
        _write_rows(csv_path, rows, space.names)
        write_text_atomic(
            meta_path, json.dumps({**meta, "host": host, "updated": time.strftime("%Y-%m-%d %H:%M")}, indent=1) + "\n"
        )
        best = max((r["val_margin_db"] for r in new if math.isfinite(r["val_margin_db"])), default=math.nan)
        print(
            f"[table] {n}/{len(todo)} {entry.config} seed {entry.seed}: best margin {best:+.3f} dB over PCA in "
            f"{time.perf_counter() - started:.0f} s",
            flush=True,
        )
    return csv_path


def seconds_log(path: Path) -> Any:
    """A Keras callback keeping each epoch's wall time in ``path`` (``.seconds``), across resumed segments."""
    import keras

    class SecondsLog(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.seconds: dict[int, float] = {}
            if path.exists():
                self.seconds = {int(k): float(v) for k, v in json.loads(path.read_text()).items()}

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.seconds[epoch + 1] = time.perf_counter() - self.start
            write_text_atomic(path, json.dumps(self.seconds))

    return SecondsLog()
