"""A model scored for a report: the test split (float and 8-bit latent) and the photo tiles, as one record.

The record holds plain numbers only (see ``measure.scored``); the model is kept beside it for the
figures. Scoring is the same for a trial's own model and for one retrained at another budget.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cae.baselines import quantized_metrics
from cae.colorize.photos import photo_tiles
from cae.data import Splits, to_unit
from cae.metrics import mse, psnr_from_mse
from cae.model import code_sizes
from cae.train import evaluate, predict


def score(
    model: Any, splits: Splits, *, label: str, run_id: str, epochs: int, retrained: bool, seconds_per_epoch: float
) -> dict[str, Any]:
    """Test MSE/PSNR/SSIM, the same with the latent stored as 8-bit integers, and PSNR on the photo tiles."""
    latent, bottleneck = code_sizes(model)
    test, _ = evaluate(model, splits.x_test)
    tiles, _ = photo_tiles()
    photos = psnr_from_mse(mse(np.clip(predict(model, tiles), 0, 1), to_unit(tiles)))
    return {
        "label": label,
        "run_id": run_id,
        "epochs": int(epochs),
        "retrained": retrained,
        "n_params": int(model.count_params()),
        "latent_values": latent,
        "bottleneck_values": bottleneck,
        "code_values": min(latent, bottleneck),
        "seconds_per_epoch": float(seconds_per_epoch),
        **test,
        **quantized_metrics(model, splits),
        "photos_psnr": photos,
        "model": model,
    }
