"""A live study beside its replay (`make bench PLAN=replay STUDY=<study>`).

The replay's figures are simulations over the table; a live study on the table's own data, subset and
trial length says how far to trust them for its strategy (the one the study records). Its finished
trials are read from its Optuna storage and kept in ``results/bench/live.json`` beside any other live
study's (``runs/`` is not committed), on the replay's clock: the wall seconds of the sampler's own
trials one after another, the enqueued points' time not counted. A live trial's seconds also hold
what the table's epochs do not (building the model, MLflow logging, the checkpoint), so the live
clock runs somewhat slower than the replay's.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from cae.bench.replay import Trial, best_so_far, median, time_to_target
from cae.errors import CAEError
from cae.metrics import psnr_from_mse
from cae.paths import write_text_atomic
from cae.search import attrs
from cae.search.storage import open_existing_storage
from cae.search.study import FINISHED  # what a study's trial budget counts (the replay's too)
from cae.urls import shown


def table_settings(meta: dict[str, Any]) -> dict[str, Any]:
    """What a study must share with the table for its trials to be compared with the replay's."""
    return {
        "space_digest": meta["space_digest"],
        "code_values": meta["code_values"],
        "data_digest": meta["data_digest"],
        "subset": meta["plan"]["subset"],
        "epochs": meta["plan"]["epochs"],
    }


Live = tuple[str, str, list[Trial]]  # (study, strategy, finished trials on the replay's clock)


def record_live(study_name: str, url: str, meta: dict[str, Any], path: Path) -> Path:
    """Read ``study_name``'s finished trials from ``url`` into ``path`` (live.json, one entry a study,
    replacing that study's earlier one); returns it."""
    import optuna

    storage = open_existing_storage(url)
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:
        raise CAEError(f"no study {study_name!r} in {shown(url)} (`make studies` lists them)") from None
    recorded = study.user_attrs
    differ = [
        f"{key} {recorded.get(key)!r} (table {value!r})"
        for key, value in table_settings(meta).items()
        if recorded.get(key) != value
    ]
    if differ:
        raise CAEError(f"study {study_name!r} did not search what the table recorded: {', '.join(differ)}")
    strategy = recorded.get("strategy")
    if not strategy:
        raise CAEError(f"study {study_name!r} does not record its strategy (sampler+pruner): run it with this release")
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.FAIL)
    clock, trials = 0.0, []
    for t in sorted(study.get_trials(deepcopy=False, states=states), key=lambda t: t.number):
        if t.datetime_start is None or t.datetime_complete is None:
            continue
        enqueued = attrs.enqueued(t) is not None
        start = clock
        if not enqueued:
            clock += (t.datetime_complete - t.datetime_start).total_seconds()
        value = float(t.value) if t.state.name == "COMPLETE" and t.value is not None else None
        trials.append(
            Trial(start, clock, t.state.name, value, len(t.intermediate_values), f"trial {t.number}", enqueued)
        )
    if not any(t.state == "COMPLETE" for t in trials):
        raise CAEError(f"study {study_name!r} has no finished trial yet")
    record = {"study": study_name, "strategy": strategy, "trials": [asdict(t) for t in trials]}
    records = {r["study"]: r for r in _records(path)}
    records[study_name] = record  # in its place if it was recorded before
    write_text_atomic(path, json.dumps({"studies": list(records.values())}, indent=1) + "\n")
    return path


def read_live(path: Path) -> list[Live]:
    """Every live study in live.json, in the order they were first recorded."""
    return [(r["study"], r["strategy"], [Trial(**t) for t in r["trials"]]) for r in _records(path)]


def _records(path: Path) -> list[dict[str, Any]]:
    return json.loads(path.read_text())["studies"] if path.exists() else []


def live_lines(live: Live, runs: dict[str, list[list[Trial]]], target: float, pca: float, figure: str) -> list[str]:
    """The report's section: a live study against its strategy's replayed seeds."""
    study, strategy, trials = live
    own = [t for t in trials if not t.enqueued]
    prior = [t.value for t in trials if t.enqueued and t.value is not None]
    best = best_so_far(trials)
    hours = max((t.end for t in own), default=0.0) / 3600
    reached = time_to_target(trials, target)
    lines = [
        f"## A live study beside its replay: `{study}`",
        "",
        f"`{study}`: `make search` with the strategy `{strategy}` on the table's data, subset and "
        f"trial length: {sum(t.state in FINISHED for t in trials)} finished trials "
        f"({sum(t.state == 'PRUNED' for t in trials)} pruned), "
        f"{hours:.2f} h of its own trials' wall time (the enqueued point's not counted, as in the replay).",
        "",
    ]
    margin = psnr_from_mse(best) - pca if math.isfinite(best) else math.nan
    facts = [f"The best of the points it chose: **{margin:+.3f} dB over PCA** on validation"]
    if prior:
        facts.append(f"the enqueued point: {psnr_from_mse(min(prior)) - pca:+.3f} dB")
    facts.append(
        f"it reached the target ({psnr_from_mse(target) - pca:+.3f} dB) after {reached / 3600:.2f} h"
        if math.isfinite(reached)
        else f"it did not reach the target ({psnr_from_mse(target) - pca:+.3f} dB)"
    )
    lines.append("; ".join(facts) + ".")
    if strategy in runs:
        seeds = runs[strategy]
        # Compared at the live study's own number of finished trials: a trial count is immune to what
        # else shared the machine, where the live clock is not.
        n = sum(t.state in FINISHED for t in trials)
        finals = np.array([best_so_far(first_finished(r, n)) for r in seeds])
        times = np.array([time_to_target(r, target) for r in seeds])
        share = float(np.mean(finals >= best)) if math.isfinite(best) else 0.0  # lower MSE is better
        # A seed with no own COMPLETE trial yet has no best (MSE inf): "none", not a number of dB.
        q25, q50, q75 = (_db(psnr_from_mse(v) - pca) for v in np.quantile(finals, [0.75, 0.5, 0.25]))
        lines += [
            "",
            f"The replay of `{strategy}` ({len(seeds)} seeds), after the same {n} finished trials: best "
            f"{q50} dB over PCA (interquartile {q25} to {q75}); the live study did as well as or "
            f"better than {share:.0%} of the replayed seeds. Over its whole run, {int(np.isfinite(times).sum())}/"
            f"{len(seeds)} replayed seeds reached the target, median time {_h(median(list(times)))}.",
        ]
    return [*lines, "", f"![live study beside its replay]({figure})", ""]


def first_finished(run: list[Trial], n: int) -> list[Trial]:
    """The run up to and including its ``n``-th finished trial."""
    done = 0
    for i, t in enumerate(run):
        done += t.state in FINISHED
        if done == n:
            return run[: i + 1]
    return run


def _db(margin: float) -> str:
    return f"{margin:+.3f}" if math.isfinite(margin) else "none"


def _h(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if math.isfinite(seconds) else "never"
