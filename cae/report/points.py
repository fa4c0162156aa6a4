"""The completed trials as points (code size, parameters, validation MSE) and what is computed on them.

The Pareto front, rank correlations, thumbnail margins and per-parameter trends. "Best" and the
front are chosen on validation; the test split scores the chosen points only (in ``retrain``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cae.codec import BaselinePoint, baseline_psnr_at
from cae.metrics import psnr_from_mse
from cae.report.data import FrontPoint, Importance, Rank

FRONT_MARGIN_DB = 3.0  # the project's bar: every front point beats the thumbnail of its size by this much


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
        Point(t.number, int(t.user_attrs["code_values"]), int(t.user_attrs["n_params"]), float(t.values[0]), t.params)
        for t in study.get_trials(deepcopy=False)
        if t.state.name == "COMPLETE" and "code_values" in t.user_attrs
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


def thumbnail_psnr(curve: list[BaselinePoint], values: int) -> float | None:
    """The thumbnail codec's PSNR at ``values``; None outside the sizes it was measured at."""
    try:
        return baseline_psnr_at(values, curve)
    except ValueError:
        return None


def front_points(front: list[Point], val_curve: list[BaselinePoint], test_psnr: dict[int, float] | None = None,
                 test_curve: list[BaselinePoint] | None = None) -> list[FrontPoint]:  # fmt: skip
    """Front rows beside the thumbnail on validation and, where a trial's model was scored, on test."""
    test_psnr = test_psnr or {}
    return [FrontPoint(p.trial, p.code_values, p.n_params, p.val_loss, thumbnail_psnr(val_curve, p.code_values),
                       test_psnr.get(p.trial),
                       thumbnail_psnr(test_curve, p.code_values) if test_curve and p.trial in test_psnr else None)
            for p in front]  # fmt: skip


def front_margins(front: list[FrontPoint]) -> dict[int, float]:
    """Trial -> validation PSNR minus the thumbnail's at equal size, for points inside the curve."""
    return {p.trial: p.margin for p in front if p.margin is not None}


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
