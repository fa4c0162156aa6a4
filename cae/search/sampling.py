"""The study's sampler: which one, and its seed for a new or a resumed study."""

from __future__ import annotations

import warnings
from typing import Any

from cae.search_config import SearchConfig


def make_sampler(cfg: SearchConfig, seed: int, conditional: bool = False) -> Any:
    """The Optuna sampler ``cfg.sampler`` names, seeded with ``seed``."""
    import optuna

    s = cfg.sampler
    if s.name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if s.name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if s.name == "gp":  # Gaussian-process Bayesian optimisation; needs PyTorch (pip install torch)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.GPSampler(seed=seed, n_startup_trials=s.n_startup_trials)
    # TPE: multivariate with constant_liar by default in Optuna 5, so parallel workers spread out.
    # A space with conditional parameters needs `group` to keep modelling them jointly.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        grouped = {"multivariate": True, "group": True} if conditional else {}
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=s.n_startup_trials, **grouped)


def resumed_seed(seed: int, worker: int, trials: int) -> int:
    """The sampler seed of a worker that finds ``trials`` trials in its study.

    Seeding a resumed study as a new one repeats the first run's random draws: the two-objective
    study trained its 973-value point twice, once per run. Mixing in the trial count gives each
    resume new draws, still the same ones for the same study history (NumPy's SeedSequence)."""
    if trials == 0:
        return seed + worker  # a new study: seed, seed + 1, ... as the config says
    import numpy as np

    return int(np.random.SeedSequence([seed, worker, trials]).generate_state(1)[0])
