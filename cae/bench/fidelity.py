"""Fidelity of the proxy: do rankings after the proxy's epochs agree with longer training?

A handful of configurations drawn at random from the default space (seeded, so a resumed run draws
the same ones) are each trained for the proxy's epochs and for ``factor`` times as many, on the
proxy's data, through ``train_and_evaluate``. The report states the Spearman rank correlation.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from cae.bench.plan import Plan
from cae.bench.store import Store
from cae.bench.studies import BASE
from cae.data import load_splits
from cae.fitting import TrainingDiverged
from cae.paths import project_root
from cae.schema import with_overrides
from cae.search_config import load_search
from cae.space import Param, SearchSpace, load_space
from cae.train import train_and_evaluate

DRAW_SEED = 0


def _draw(p: Param, rng: np.random.Generator) -> Any:
    """Uniform over choices and linear ranges, log-uniform over log ranges, as random search draws."""
    if p.kind == "categorical":
        return p.choices[int(rng.integers(len(p.choices)))]
    low, high = float(p.low), float(p.high)  # type: ignore[arg-type]
    if p.kind == "int":
        low, high = low - 0.5, high + 0.5  # every integer equally wide
    value = math.exp(rng.uniform(math.log(low), math.log(high))) if p.log else rng.uniform(low, high)
    if p.step:
        value = p.low + round((value - p.low) / p.step) * p.step  # type: ignore[operator]
    return int(min(p.high, max(p.low, round(value)))) if p.kind == "int" else float(value)  # type: ignore[type-var]


def draw_points(space: SearchSpace, n: int, seed: int = DRAW_SEED) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    points = []
    for _ in range(n):
        point: dict[str, Any] = {}
        for p in space.params:
            if p.active(point):
                point[p.name] = _draw(p, rng)
        points.append(point)
    return points


def measure_fidelity(plan: Plan, source: str | None, store: Store, host: str) -> None:
    if not plan.fidelity_configs:
        return
    import keras

    cfg = load_search(project_root() / BASE)
    space = load_space(cfg.space, cfg.experiment)
    base = with_overrides(cfg.experiment, {"data.source": source, "data.subset": plan.subset})
    splits = load_splits(source, base.seed, plan.subset)

    def train(point: dict[str, Any], epochs: int) -> tuple[float, float]:
        keras.backend.clear_session()
        config = space.apply(with_overrides(base, {"train.epochs": epochs}), point)
        try:
            result = train_and_evaluate(config, splits, evaluate_test=False)
        except TrainingDiverged:  # a point of the space that diverges ranks last (JSON: Infinity)
            return math.inf, 0.0
        return result.best_val_loss, result.seconds

    def measure(point: dict[str, Any]) -> dict[str, Any]:
        short, short_s = train(point, plan.epochs)
        long, long_s = train(point, plan.epochs * plan.fidelity_factor)
        return {"params": point, "short": short, "long": long, "short_seconds": short_s, "long_seconds": long_s}

    for i, point in enumerate(draw_points(space, plan.fidelity_configs)):
        store.get_or_measure(f"fidelity/config{i}", lambda p=point: measure(p), host)
