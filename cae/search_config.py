"""A study's settings as validated data: what ``experiments/search.yaml`` and its kind hold.

The engine, sampler, pruner, budget and objectives of a study, with the experiment every trial shares
(:class:`cae.config.ExperimentConfig`, the same keys as ``experiments/*.yaml`` under ``experiment.``).
Defaults live here and only here, like the experiment's in :mod:`cae.config`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cae.config import ExperimentConfig
from cae.config_files import read_yaml
from cae.errors import CAEError
from cae.paths import check_study_name
from cae.schema import from_dict, with_overrides

Objective = Literal["best_val_loss", "code_values", "val_psnr", "colourfulness_gap"]
# Optimisation direction of each objective a study may name.
DIRECTIONS: dict[str, str] = {
    "best_val_loss": "minimize",
    "code_values": "minimize",
    "val_psnr": "maximize",
    "colourfulness_gap": "minimize",
}


@dataclass(frozen=True)
class SamplerConfig:
    name: Literal["tpe", "random", "gp", "nsga2"] = "tpe"
    n_startup_trials: int = 6  # random trials before TPE models the space (TPE/NSGA-II)
    # The sampler's own seed; None = the experiment's seed (which also fixes the data split, so
    # repeating a search with other sampler seeds keeps the same split).
    seed: int | None = None


@dataclass(frozen=True)
class PrunerConfig:
    # "median" stops a trial whose val_loss is worse than the median of earlier trials at the
    # same epoch; "hyperband" / "successive_halving" are multi-fidelity; "none" disables it.
    # The default study's is chosen by the replay benchmark (experiments/search.yaml).
    name: Literal["median", "hyperband", "successive_halving", "none"] = "hyperband"
    n_startup_trials: int = 4  # trials that always run to the end before pruning starts (median)
    n_warmup_steps: int = 2  # epochs every trial runs before it may be pruned (median; SHA's min_resource)


@dataclass(frozen=True)
class SearchConfig:
    study: str = "cae-search"  # Optuna study, MLflow experiment and runs/<study>/ folder
    # The space the trials are drawn from. The default fits the default experiment (the seed's CAE): its
    # conv-only family; the default study (experiments/search.yaml) names the PCA-code family's.
    space: str = "search_spaces/conv.yaml"
    engine: Literal["optuna", "keras-tuner"] = "optuna"
    # What a trial trains: an autoencoder ("reconstruction") or a gray-to-colour network
    # ("colorization", `make colorize-search`, starting from source_study's best trial).
    stage: Literal["reconstruction", "colorization"] = "reconstruction"
    source_study: str | None = None  # colorization: the reconstruction study whose best it starts from
    # colorization: an experiment file to start from instead (`FROM=experiments/conv-best.yaml`);
    # source_study is then its `name`.
    source_config: str | None = None
    trials: int = 30  # finished trials (COMPLETE + PRUNED) the study should hold in total
    # Resume the study although this call's data, subset, epochs or space differ from what its
    # trials were trained on (cae/search/record.py); the change is recorded with the study.
    extend: bool = False
    timeout: float | None = None  # seconds per call; None = until `trials` is reached
    # "best_val_loss" (validation MSE) alone is a single-objective search; adding "code_values" (the
    # narrower of latent and bottleneck) makes it a two-objective Pareto search. Colorization
    # studies trade "val_psnr" against "colourfulness_gap" (|1 − pred/true chroma spread|).
    objectives: tuple[Objective, ...] = ("best_val_loss",)
    # Colorization: the colourfulness a classification model's decoding temperature aims for (the
    # temperature is chosen on validation: the best PSNR among those reaching it).
    vivid: float = 0.7
    # Colorization: train the Pareto front's models again for this many epochs after the study (its
    # trials are short); None keeps the trials' own models.
    final_epochs: int | None = None
    # A sampled point whose code (narrower of latent and bottleneck) exceeds this many values is
    # skipped before training (FAIL "skipped: ...", no run, not counted): "better" only means
    # something at a fixed compression. Spaces that sample model.code_budget never hit it. None = no limit.
    max_code_values: int | None = None
    # One question per study: every trial's code holds exactly this many values (set as
    # experiment.model.code_budget), so validation MSE and the margin over PCA at this size rank
    # trials alike. A space that samples model.code_budget is for a study without it (the
    # two-objective one). None = the code size is the space's or the experiment's.
    code_values: int | None = None
    storage: str | None = None  # Optuna storage URL; None = sqlite:///<repo>/runs/optuna.db
    workers: int = 1  # OS processes on this host, each with its share of CPU threads
    heartbeat_interval: int = 20  # seconds between a running trial's heartbeats
    grace_period: int = 120  # a trial silent this long is failed and queued again (storage.MAX_RETRIES times at most)
    tuner: Literal["hyperband", "bayesian", "random"] = "hyperband"  # keras-tuner's algorithm
    # Points a new study runs first (a prior: the expert's guesses), each as config overrides (dotted
    # keys; unlisted searched keys take the base experiment's values). Their models are kept, so the
    # report can say whether the search beat them. Baselines are no trials: cae/baseline_runs.py.
    enqueue: tuple[dict[str, Any], ...] = ()
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    pruner: PrunerConfig = field(default_factory=PrunerConfig)
    # Training settings every trial shares: the same keys as experiments/*.yaml.
    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)

    @property
    def directions(self) -> list[str]:
        return [DIRECTIONS[o] for o in self.objectives]

    @property
    def strategy(self) -> str:
        """Sampler, pruner and whether enqueued points run first, as the replay names a strategy
        (``tpe+hyperband+prior``): recorded with a study so a live study is compared with its own."""
        return f"{self.sampler.name}+{self.pruner.name}" + ("+prior" if self.enqueue else "")

    @property
    def sampler_seed(self) -> int:
        """The sampler's seed: its own if set, else the experiment's (one per engine and study)."""
        return self.experiment.seed if self.sampler.seed is None else self.sampler.seed

    def validate(self) -> None:
        if self.trials < 1:
            raise CAEError(f"trials must be >= 1, got {self.trials}")
        if self.workers < 1:
            raise CAEError(f"workers must be >= 1, got {self.workers}")
        first = {"reconstruction": "best_val_loss", "colorization": "val_psnr"}[self.stage]
        if not self.objectives or self.objectives[0] != first or len(set(self.objectives)) != len(self.objectives):
            raise CAEError(
                f"objectives of a {self.stage} study must start with {first} and not repeat, got "
                f"{list(self.objectives)}; allowed: [best_val_loss] or [best_val_loss, code_values] "
                "(reconstruction), [val_psnr] or [val_psnr, colourfulness_gap] (colorization)"
            )
        check_study_name(self.study)
        if self.code_values is not None:
            if not 1 <= self.code_values <= 3 * 32 * 32:
                raise CAEError(f"code_values must be 1..3072 values (a 32×32 RGB image), got {self.code_values}")
            if len(self.objectives) > 1:
                raise CAEError(
                    "code_values fixes the code size: a two-objective study (code_values among its "
                    "objectives) spans sizes; set one or the other"
                )
            if self.experiment.model.code_budget != self.code_values:
                raise CAEError(
                    f"code_values={self.code_values} but experiment.model.code_budget="
                    f"{self.experiment.model.code_budget}: the study's code size is code_values alone"
                )


def load_search(path: str | Path | None, overrides: Mapping[str, Any] | None = None) -> SearchConfig:
    """A study's settings: defaults, then the YAML file (if any), then ``overrides`` (dotted keys;
    training keys under ``experiment.``, e.g. ``experiment.train.epochs``)."""
    data = read_yaml(path) if path else {}
    overrides = dict(overrides or {})
    code = overrides.get("code_values", data.get("code_values"))
    if code is not None:  # the study's code size is its experiment's code budget: set in one place
        overrides.setdefault("experiment.model.code_budget", code)
        experiment = data.setdefault("experiment", {})
        model = experiment.setdefault("model", {}) if isinstance(experiment, dict) else None
        if isinstance(model, dict):
            model["code_budget"] = data.get("code_values")
    return with_overrides(from_dict(SearchConfig, data, str(path or "study config")), overrides)
