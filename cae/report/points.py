"""The completed trials as points (code size, parameters, validation MSE) and what is computed on them.

The Pareto front, rank correlations and per-parameter trends. "Best" and the front are chosen on
validation; the test split scores the chosen points only (in ``build``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cae.metrics import psnr_from_mse
from cae.report.data import Importance, Rank
from cae.search import attrs

# Importances and rank correlations need this many completed trials: with fewer, fANOVA's shares and a
# Spearman ρ are noise (3 trials give ρ = ±1.00), and the report says there are too few instead.
MIN_FOR_IMPORTANCES = 8


@dataclass(frozen=True)
class Point:
    trial: int
    code_values: int
    n_params: int
    val_loss: float
    params: dict[str, Any]

    @property
    def val_psnr(self) -> float:
        return psnr_from_mse(self.val_loss)


def completed_points(study: Any) -> list[Point]:
    """Completed trials that recorded their code size (the first objective is validation MSE)."""
    return [
        Point(t.number, attrs.code_values(t) or 0, int(t.user_attrs["n_params"]), float(t.values[0]), t.params)
        for t in study.get_trials(deepcopy=False)
        if t.state.name == "COMPLETE" and attrs.code_values(t) is not None
    ]


def pareto_front(points: list[Point]) -> list[Point]:
    """Points no other point beats on both code size and validation MSE, smallest code first."""
    front: list[Point] = []
    for p in sorted(points, key=lambda p: (p.code_values, p.val_loss)):
        if not front or p.val_loss < front[-1].val_loss:
            front.append(p)
    return front


def spearman(x: list[float], y: list[float]) -> Rank:
    from scipy.stats import spearmanr

    if len(x) < 3 or len(set(x)) < 2:
        return float("nan"), float("nan")
    r = spearmanr(x, y)
    return float(r.statistic), float(r.pvalue)


def size_correlations(points: list[Point]) -> tuple[Rank, Rank]:
    """Spearman ρ of validation MSE against code size and against parameter count."""
    errs = [p.val_loss for p in points]
    return spearman([p.code_values for p in points], errs), spearman([p.n_params for p in points], errs)


def importance(name: str, share: float, points: list[Point]) -> Importance:
    """``name``'s share, with the rank trend of a numeric parameter or the mean error per choice."""
    values = [p.params.get(name) for p in points]
    errs = [p.val_loss for p in points]
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return Importance(name, share, rho=spearman([float(v) for v in values], errs)[0])
    by: dict[str, list[float]] = {}
    for v, e in zip(values, errs, strict=True):
        by.setdefault(str(v), []).append(e)
    means = sorted((float(np.mean(es)), k, len(es)) for k, es in by.items())
    return Importance(name, share, by_choice=[(k, m, n) for m, k, n in means])
