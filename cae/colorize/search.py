"""`cae colorize-search` (`make colorize-search`): the colorization stage, searched by the harness.

An Optuna study ``<study>-colorize`` in the same storage as the reconstruction study it starts
from, run by the same engine (workers, resume, one MLflow child run per trial). Trial 0 is the
source's best architecture with today's best recipe (predict chroma, MSE); the space
(``search_spaces/colorization.yaml``) searches what is predicted, the loss (MSE, L1, Huber,
classification over chroma classes with rebalancing), skip connections, width and depth around the
source, learning rate and batch size. Two objectives: validation PSNR (higher) and the
colourfulness gap |1 − pred/true chroma spread| (lower), so the study returns a Pareto front.
Then the front is trained to the end, scored on test and written up
(``runs/<study>/report/colorization-search.md``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from cae.colorize.variants import capped, source_architecture
from cae.config import ExperimentConfig
from cae.config_files import read_yaml
from cae.data import load_splits
from cae.errors import CAEError, failure_reason
from cae.schema import flatten_mapping, from_dict, to_dict, with_overrides
from cae.search import attrs
from cae.search_config import SearchConfig
from cae.space import load_space
from cae.tracking import Tracker

DEFAULT_CONFIG = "experiments/colorize-search.yaml"
CONV_SPACE = "search_spaces/colorization.yaml"
DENSE_SPACE = "search_spaces/colorization-hybrid.yaml"  # a source with a dense code, rebuilt for gray
# The recipe `make colorize-best` trains (trial 0), then the variants the study should see
# early, most promising first (a short study may run only the first of them): chroma classes
# (Zhang et al.), the same with the global semantic branch and its class loss (Iizuka et al.), and
# skip connections (the most colourful MSE variant).
RECIPE = {"data.input": "luma", "model.predict": "chroma", "train.loss": "mse", "model.skips": False}
ZHANG = {"train.loss": "classification", "train.rebalance": 0.5, "model.skips": True}
EARLY = {
    "enqueued: chroma classes (Zhang et al.)": ZHANG,
    "enqueued: chroma classes + semantic branch (Iizuka et al.)": {
        **ZHANG,
        "model.semantic": 128,
        "train.class_weight": 0.3,
    },
    "enqueued: today's skips variant": {"model.skips": True},
}


def colorization_config(
    path: str | Path | None,
    source_study: str,
    overrides: dict[str, Any],
    source: tuple[ExperimentConfig, dict[str, Any]] | None = None,
    source_config: str | None = None,
) -> tuple[SearchConfig, dict[str, Any]]:
    """(study config, lineage): the YAML's settings on top of the source study's best architecture.

    The YAML's ``experiment:`` block and ``overrides`` (``experiment.*`` keys) change the source's
    config rather than replace it; the study is named ``<source>-colorize``. ``source``: (config,
    lineage) to start from instead of ``source_study``'s best.json; ``source_config``: an experiment
    file to start from, whose ``name`` then stands for ``source_study``.
    """
    raw = read_yaml(path or DEFAULT_CONFIG)
    where = str(path or DEFAULT_CONFIG)
    block = raw.pop("experiment", None) or {}
    if not isinstance(block, dict):
        raise CAEError(f"{where}: experiment must be a mapping of config keys, got {block!r}")
    experiment = flatten_mapping(block)
    search = {k: v for k, v in overrides.items() if not k.startswith("experiment.")}
    training = {k.removeprefix("experiment."): v for k, v in overrides.items() if k.startswith("experiment.")}
    cfg = with_overrides(from_dict(SearchConfig, {**raw, "stage": "colorization"}, where), search)
    if cfg.engine != "optuna":
        raise CAEError("colorize-search runs on Optuna only (ENGINE=keras-tuner is for reconstruction)")
    if source_config:
        source = source_architecture(None, source_config)
        source_study = source[0].name
    start, lineage = source or source_architecture(source_study, None)
    lineage = dict(lineage)
    if start.model.bottleneck == "dense" and cfg.space == CONV_SPACE:
        cfg = dataclasses.replace(cfg, space=DENSE_SPACE)  # skips and the semantic branch need encoder levels
    base = with_overrides(start, {**RECIPE, **experiment, **training, "name": f"{source_study}-colorize"}, where)
    base = capped(base, lineage, {**experiment, **training})
    cfg = dataclasses.replace(
        cfg,
        study=f"{source_study}-colorize",
        source_study=source_study,
        experiment=base,
        source_config=lineage.get("source_config"),
    )
    return from_dict(SearchConfig, to_dict(cfg), where), lineage


def early_points(cfg: SearchConfig) -> list[dict[str, Any]]:
    """Trial 0, the source with today's best recipe; then chroma classes, the same with the semantic branch,
    the source with skips (those in the space)."""
    space = load_space(cfg.space, cfg.experiment)
    points = []
    if not space.outside(cfg.experiment):
        points.append({"params": space.point(cfg.experiment), "attrs": {attrs.RECIPE: "today's best recipe"}})
    for recipe, change in EARLY.items():
        try:
            config = with_overrides(cfg.experiment, change)
        except CAEError:
            continue
        if not space.outside(config):
            points.append({"params": space.point(config), "attrs": {attrs.RECIPE: recipe}})
    return points


def colorize_search(
    path: str | Path | None,
    source_study: str,
    overrides: dict[str, Any],
    tracker: Tracker | None = None,
    source_config: str | None = None,
) -> Path:
    """Run (or resume) the study, train and score its front, write the report; returns the report.

    ``source_config``: an experiment file to start from instead of ``source_study``'s best (the
    study is then ``<its name>-colorize``), for an architecture whose study is not at hand.
    """
    cfg, lineage = colorization_config(path, source_study, overrides, source_config=source_config)
    # lazy: TensorFlow and Optuna load only now, so a bad config or source is said in about a second.
    from cae.colorize.report import write_search_report
    from cae.colorize.task import ColorizationTask
    from cae.search.run import run_search

    tracker = (tracker or Tracker()).check()
    run_search(
        cfg, ColorizationTask, tracker=tracker, extra_points=early_points(cfg), study_attrs={attrs.LINEAGE: lineage}
    )
    return write_search_report(cfg, tracker, report_models(cfg, tracker))


def report_models(cfg: SearchConfig, tracker: Tracker) -> Any:
    """What the report scores, trained here: the semantic-check classifier, the front's final models
    (again for ``final_epochs``, or the trials' own) and the oracle bound of the chosen one.

    Returns a :class:`cae.colorize.report.StudyModels`; reruns load what an earlier call trained.
    """
    # lazy: TensorFlow, as above.
    from cae.colorize.classifier import semantic_classifier
    from cae.colorize.final import choose, pick_front, train_final, train_oracle
    from cae.colorize.report import StudyModels
    from cae.search.study import load_existing_study

    space = load_space(cfg.space, cfg.experiment)
    study = load_existing_study(cfg, conditional=space.conditional)
    splits = load_splits(cfg.experiment.data.source, cfg.experiment.seed, cfg.experiment.data.subset)
    classifier = semantic_classifier(splits, tracker)
    lineage = study.user_attrs.get(attrs.LINEAGE) or {}
    finals = [train_final(cfg, t, splits, tracker, classifier, lineage, space) for t in pick_front(study.best_trials)]
    oracle = None
    if finals:
        try:
            oracle = train_oracle(cfg, choose(finals, cfg.vivid), splits, tracker, classifier, lineage)
        except Exception as err:  # a bound, never the result: the front's report is written without it
            print(f"note: the oracle bound was not measured ({failure_reason(err)})", flush=True)
    return StudyModels(study=study, splits=splits, classifier=classifier, finals=finals, oracle=oracle)


__all__ = ["colorization_config", "colorize_search", "early_points", "report_models"]
