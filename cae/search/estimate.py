"""How long a study will take: a first estimate before its first trial, refined by every finished one.

The first one times a few training steps of the study's first point on this machine and assumes its
trials stop where the benchmark's replay of the study's strategy stopped them
(``results/bench/epoch_fates.json``, tracked: the share of replayed trials stopped at each rung's
epoch, and the share that completed), scaled to the study's own trial length; all of its epochs
without a pruner.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

from cae.paths import project_root

STEPS = 8  # timed training steps (after as many to warm up): a few seconds on 2 cores
DEFAULT_SHARE = 0.35  # the share of its epochs an average trial trains under a pruner, without a replay to say
FATES = Path("results/bench/epoch_fates.json")  # written by `make bench PLAN=replay` (cae.bench.replay_report)


# How many trials the prior share (the replay's, over many seeds) weighs against the study's own: the
# first trials alone mislead, since the enqueued point and the first trial at each rung always go on.
PRIOR_TRIALS = 10


def duration_estimate(
    finished: list[tuple[float, int]], left: int, workers: int, epochs: int, prior_share: float
) -> str | None:
    """What is left of the study, e.g. ``~1.2 h for the 20 trial(s) left``, from its finished trials'
    ``(seconds, epochs trained)``.

    Their pace (seconds an epoch) times the epochs the trials left are expected to train: the share of
    their ``epochs`` an average trial trains, the finished trials' own share blended with
    ``prior_share`` (:func:`epoch_share`) as if it came from ``PRIOR_TRIALS`` more. A sum of trial
    times, so means, not medians: under a pruner most trials stop within minutes and a few train on.
    """
    if left <= 0 or not finished or epochs <= 0:
        return None
    seconds = sum(s for s, _ in finished)
    trained = sum(min(e, epochs) for _, e in finished)
    if trained <= 0:
        return None
    pace = seconds / trained
    share = (PRIOR_TRIALS * prior_share + trained / epochs) / (PRIOR_TRIALS + len(finished))
    return (
        f"estimate: ~{_time(pace * epochs * share * left / max(1, workers))} for the {left} trial(s) left "
        f"(an epoch ~{pace:.0f} s, a trial ~{share:.0%} of its {epochs} epochs; {len(finished)} finished)"
    )


def _time(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{max(1, round(seconds / 60))} min"


def epoch_share(cfg: Any, fates_path: Path | None = None) -> float:
    """The share of its epochs an average trial of ``cfg``'s strategy trains (the replay's, if recorded).

    A pruned trial stops at a rung, an absolute epoch (3 or 9 under successive halving), whatever the
    trial length; only a completed one trains them all. So the replay's fates, not its 12-epoch shares,
    carry over to a 20-epoch study.
    """
    if cfg.pruner.name == "none" or len(cfg.objectives) > 1:
        return 1.0
    epochs = cfg.experiment.train.epochs
    try:
        path = fates_path or project_root() / FATES
        fates = json.loads(path.read_text())["strategies"][cfg.strategy]
        return sum(share * (1.0 if at == "complete" else min(int(at), epochs) / epochs) for at, share in fates.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return DEFAULT_SHARE


def first_estimate(cfg: Any, config: Any, splits: Any, left: int) -> str:
    """One line before the first trial: the plan and a first estimate from ``config``'s measured steps."""
    from cae.train import build_model, train_and_evaluate

    batch = config.train.batch_size
    steps = max(1, math.ceil(len(splits.x_train) / batch))
    timed = min(STEPS, steps)
    # The study's own training path (its input transform, labels and loss) on a slice; the model is
    # built on the whole split, as a trial's is (a PCA code reads the cached basis of that split).
    few = dataclasses.replace(
        splits,
        x_train=splits.x_train[: timed * batch],
        y_train=splits.y_train[: timed * batch],
        x_val=splits.x_val[:batch],
        y_val=splits.y_val[:batch],
    )
    model = build_model(config, splits)
    fitted = train_and_evaluate(config, few, model=model, epochs=2, evaluate_test=False)
    per_epoch = fitted.epoch_seconds[-1] * steps / timed * 1.1  # + validation, about a tenth more
    epochs = config.train.epochs
    share = epoch_share(cfg)
    total = per_epoch * epochs * share * left / max(1, cfg.workers)
    pruner = "no pruner" if cfg.pruner.name == "none" else f"{cfg.pruner.name} pruning"
    return (
        f"plan: {left} more trial(s) of up to {epochs} epochs on {len(splits.x_train):,} images, "
        f"{cfg.sampler.name} sampler, {pruner}, {cfg.workers} worker(s); first estimate ~{_time(total)} "
        f"(an epoch ~{per_epoch:.0f} s here, an average trial {share:.0%} of its epochs); refined after each trial"
    )
