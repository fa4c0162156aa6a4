"""What a search report states, as plain values: built by ``measure``, written out by ``render``.

No study, model or tracker in here, so the Markdown can be written (and tested) without training.
Paths are already repository-relative: committed reports name no machine's absolute paths.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cae.metrics import psnr_from_mse

Rank = tuple[float, float]  # (Spearman ρ, p-value); NaN for both when there are too few points


@dataclass(frozen=True)
class Retrained:
    """A model retrained at the report's epoch budget and scored on the test split."""

    label: str
    run_id: str
    n_params: int
    code_values: int  # the narrower of latent and bottleneck
    latent_values: int
    test_mse: float
    test_psnr: float
    test_ssim: float
    q8_psnr: float  # test PSNR with the latent stored as 8-bit integers
    seconds_per_epoch: float
    thumb_at_code: float | None  # thumbnail codec PSNR at ``code_values`` values (None: outside its curve)
    thumb_at_latent: float | None  # the same at as many bytes as the 8-bit latent

    @property
    def margin(self) -> float | None:
        return None if self.thumb_at_code is None else self.test_psnr - self.thumb_at_code


@dataclass(frozen=True)
class FrontPoint:
    """A Pareto-front trial (chosen on validation) beside the thumbnail codec of its code size."""

    trial: int
    code_values: int
    n_params: int
    val_loss: float
    thumb: float | None  # thumbnail codec PSNR on the validation images (None: outside its curve)
    # The trial's own model scored on the test split, beside the thumbnail on the test images (a
    # two-objective study keeps every trial's model); None where it was not scored.
    test_psnr: float | None = None
    test_thumb: float | None = None

    @property
    def val_psnr(self) -> float:
        return psnr_from_mse(self.val_loss)

    @property
    def margin(self) -> float | None:
        return None if self.thumb is None else self.val_psnr - self.thumb

    @property
    def test_margin(self) -> float | None:
        return None if self.test_thumb is None or self.test_psnr is None else self.test_psnr - self.test_thumb


@dataclass(frozen=True)
class Importance:
    """One parameter's fANOVA share and the direction its values went with validation MSE."""

    name: str
    share: float  # share of the variance of validation MSE explained by single parameters (sums to 1)
    rho: float | None = None  # numeric parameter: Spearman ρ of value vs validation MSE (NaN: too few values)
    by_choice: list[tuple[str, float, int]] | None = None  # categorical: (choice, mean val MSE, n), best first


@dataclass(frozen=True)
class BestTrial:
    number: int
    val_loss: float
    run_id: str
    params: dict[str, Any]
    n_params: int
    latent_values: int
    bottleneck_values: int


@dataclass(frozen=True)
class ReportData:
    study: str
    generated: str  # "YYYY-MM-DD HH:MM"
    command: str  # the `make report ...` command that wrote it, with its data settings
    machine: str
    data_source: str  # "path", "keras" or "sample"
    data_location: str  # repository-relative
    split: tuple[int, int, int]  # train / validation / test images
    seed: int
    parent_run_id: str | None
    storage: str  # repository-relative file or a URL without its password
    states: dict[str, int]  # trial state -> count
    objectives: list[str]
    epochs_per_trial: int
    wall_seconds: float  # first start to last finish (NaN if unknown)
    trial_seconds: float  # summed over trials
    space: str
    best: BestTrial
    budget: int  # epochs of the two retrains
    reference: Retrained
    top: Retrained
    rho_code: Rank  # code size vs validation MSE over the completed trials
    rho_params: Rank  # parameter count vs validation MSE
    n_completed: int
    single_objective: bool  # the code size is capped, not searched along
    front: list[FrontPoint]
    importances: list[Importance] = field(default_factory=list)
    images: dict[str, str] = field(default_factory=dict)  # figure key -> file name next to search.md
    colorization: str | None = None  # the colorization report's file name, when it exists
    thumb_largest: tuple[int, float] | None = None  # the thumbnail curve's largest size and its val PSNR

    @property
    def n_trials(self) -> int:
        return sum(self.states.values())
