"""What a search report states, as plain values: built by ``measure``, written out by ``render``.

No study, model or tracker in here, so the Markdown can be written (and tested) without training.
Paths are already repository-relative: committed reports name no machine's absolute paths.
Every PSNR is in dB over a whole split; a margin is a model's PSNR minus a baseline's at the same
code size ("vs PCA", "vs thumbnail"), at equal values (float codes) or equal bytes (8-bit codes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cae.metrics import psnr_from_mse

Rank = tuple[float, float]  # (Spearman ρ, p-value); NaN for both when there are too few points


def margin(model: float | None, baseline: float | None) -> float | None:
    return None if model is None or baseline is None else model - baseline


@dataclass(frozen=True)
class Against:
    """The baselines at a model's size on the images it was scored on (None: not measured there)."""

    pca: float | None = None  # PCA at the code size, float coefficients
    pca_q8: float | None = None  # PCA at the latent's size, 8-bit coefficients (the model's 8-bit bytes)
    thumb: float | None = None  # the thumbnail at the code size (None outside 192..2,028 values)


@dataclass(frozen=True)
class ScoredModel:
    """A model scored on the test split: a trial's own model, or one retrained at the report's budget."""

    label: str
    run_id: str
    epochs: int
    retrained: bool  # False: the trial's own model, exactly as the study trained it
    n_params: int
    code_values: int  # the narrower of latent and bottleneck
    latent_values: int
    test_mse: float
    test_psnr: float
    test_ssim: float
    q8_psnr: float  # test PSNR with the latent stored as 8-bit integers
    seconds_per_epoch: float
    test: Against = field(default_factory=Against)
    photos_psnr: float | None = None  # on the photo tiles (ordinary photos, not CIFAR-10)
    photos: Against = field(default_factory=Against)

    @property
    def vs_pca(self) -> float | None:
        return margin(self.test_psnr, self.test.pca)

    @property
    def vs_pca_q8(self) -> float | None:
        return margin(self.q8_psnr, self.test.pca_q8)

    @property
    def vs_thumb(self) -> float | None:
        return margin(self.test_psnr, self.test.thumb)


@dataclass(frozen=True)
class FrontPoint:
    """A Pareto-front trial (chosen on validation), beside the baselines of its code size."""

    trial: int
    code_values: int
    n_params: int
    val_loss: float
    val: Against = field(default_factory=Against)
    scored: ScoredModel | None = None  # its own model on the test split (kept by a two-objective study)

    @property
    def val_psnr(self) -> float:
        return psnr_from_mse(self.val_loss)

    @property
    def val_vs_pca(self) -> float | None:
        return margin(self.val_psnr, self.val.pca)

    @property
    def val_vs_thumb(self) -> float | None:
        return margin(self.val_psnr, self.val.thumb)


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
class StoppedPoint:
    """An enqueued point that did not complete (pruned or failed): no model of it was kept to score."""

    trial: int
    label: str  # the enqueued change, e.g. "pca_init=False, encode_layers=2"
    state: str
    epochs: int  # epochs it ran
    val_psnr: float | None  # its best validation PSNR
    code_values: int | None
    pca_val: float | None  # PCA on validation at its code size


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
    budget: int  # epochs of the two scored models
    reference: ScoredModel
    top: ScoredModel
    rho_code: Rank  # code size vs validation MSE over the completed trials
    rho_params: Rank  # parameter count vs validation MSE
    n_completed: int
    single_objective: bool  # the code size is capped, not searched along
    front: list[FrontPoint]
    ablation: list[ScoredModel] = field(default_factory=list)  # the enqueued points' own models
    stopped: list[StoppedPoint] = field(default_factory=list)  # enqueued points that did not complete
    pca_test: dict[int, float] = field(default_factory=dict)  # PCA on test at the target grid (float)
    pca_q8_test: dict[int, float] = field(default_factory=dict)  # ... with 8-bit coefficients
    importances: list[Importance] = field(default_factory=list)
    images: dict[str, str] = field(default_factory=dict)  # figure key -> file name next to search.md
    colorization: str | None = None  # the colorization report's file name, when it exists

    @property
    def n_trials(self) -> int:
        return sum(self.states.values())
