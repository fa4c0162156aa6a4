"""Could a surrogate fitted on the learning-curve table replace the replay's nearest-configuration lookup?

Fits a Gaussian process (Matern 5/2 with one length scale per encoded parameter, plus a noise term)
to each recorded run's best validation MSE (log) and scores it leaving one configuration out at a
time, both of its runs where it was trained twice. Prints the error in dB beside the spread between
configurations and the noise between two runs of one configuration. Run from the repository root:

    .venv/bin/python scripts/surrogate_check.py
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

from cae.bench.replay import encode, table_from_rows
from cae.bench.table import BASE, read_rows, table_paths
from cae.paths import resolve
from cae.search_config import load_search
from cae.space import load_space

DB = 10 / math.log(10)  # dB per unit of log MSE


def fit(x: np.ndarray, y: np.ndarray) -> GaussianProcessRegressor:
    # The noise term may take all the variance (normalised targets): run-to-run noise is ~12 % of it.
    kernel = ConstantKernel() * Matern(np.ones(x.shape[1]), (1e-2, 1e3), nu=2.5) + WhiteKernel(1e-2, (1e-8, 1.0))
    with warnings.catch_warnings():
        # A length scale at its upper bound: a parameter that does not matter, not a failed fit.
        warnings.simplefilter("ignore", ConvergenceWarning)
        return GaussianProcessRegressor(kernel, normalize_y=True, n_restarts_optimizer=2, random_state=0).fit(x, y)


def main() -> None:
    cfg = load_search(resolve(BASE))
    table = table_from_rows(read_rows(table_paths(None)[0]), load_space(resolve(cfg.space), cfg.experiment))
    runs = [
        (c, encode(table.space, table.params[c]), math.log(min(curve.val)))
        for c in table.curves
        for curve in table.curves[c]
    ]
    ids = np.array([c for c, _, _ in runs])
    x = np.array([e for _, e, _ in runs])
    y = np.array([v for _, _, v in runs])
    errors = []
    for config in sorted(set(ids)):
        held = ids == config
        errors += list((fit(x[~held], y[~held]).predict(x[held]) - y[held]) * DB)
    errors = np.array(errors)
    twice = [y[ids == c] for c in set(ids) if (ids == c).sum() == 2]
    print(f"{len(set(ids))} configurations, {len(y)} runs")
    rmse, typical, spread = np.sqrt((errors**2).mean()), np.median(np.abs(errors)), y.std() * DB
    print(f"leave-one-configuration-out error: RMSE {rmse:.3f} dB, median |error| {typical:.3f} dB")
    print(f"SD between the table's runs: {spread:.3f} dB; variance explained: {1 - rmse**2 / spread**2:.0%}")
    print(f"two runs of one configuration differ by {np.median([abs(a - b) for a, b in twice]) * DB:.3f} dB (median)")


if __name__ == "__main__":
    main()
