"""Everything MLflow: the only package that imports it.

Runs are created through ``MlflowClient`` with explicit run ids (no fluent "active run"), so
worker processes, threads and resumed searches can each write to their own run safely. Names
follow the project conventions: per-epoch ``train_loss`` / ``val_loss`` with ``step`` = epoch
(from 1); final ``best_val_loss``, ``test_mse``, ``test_psnr``, ``test_ssim``; one experiment per
study with a parent run per study and a child run per trial.
"""

from cae.tracking.client import Tracker, default_tracking_uri, git_commit, tracking_uri
from cae.tracking.run import SIZE_PARAMS, Run, trial_run

__all__ = ["SIZE_PARAMS", "Run", "Tracker", "default_tracking_uri", "git_commit", "tracking_uri", "trial_run"]
