"""Optuna's own figures (matplotlib backend) for a study: history, curves, importances, front."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cae.errors import first_line
from cae.paths import atomic_path, ensure_dir
from cae.search import attrs
from cae.search.study import optuna_module


def save_optuna_plots(study: Any, out: Path, objectives: Sequence[str] | None = None) -> list[Path]:
    """Draw what can be drawn yet into ``out``; returns the files written.

    No parallel-coordinate PNG: with a dozen sampled keys it is unreadable as a still image;
    ``make dashboard`` draws it interactively (axes can be reordered and filtered).

    The objectives' names are the ones the study recorded when it was created (a report may be
    asked for with another experiment's config); ``objectives`` only names those of a study that
    recorded none.
    """
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ov

    optuna = optuna_module()
    recorded = study.user_attrs.get(attrs.OBJECTIVES)
    if recorded and len(recorded) == len(study.directions):
        objectives = recorded
    elif not objectives or len(objectives) != len(study.directions):
        objectives = [f"objective {i}" for i in range(len(study.directions))]
    first = objectives[0]
    target = None if len(study.directions) == 1 else (lambda t: t.values[0])
    figures: dict[str, Callable[[], Any]] = {
        "optimization_history": lambda: ov.plot_optimization_history(study, target=target, target_name=first),
        # fANOVA: each parameter's share of the variance explained by single parameters, as the report says.
        "param_importances": lambda: ov.plot_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0), target=target, target_name=first
        ),
    }
    if len(study.directions) > 1:
        figures["pareto_front"] = lambda: ov.plot_pareto_front(study, target_names=list(objectives))
    else:  # per-epoch values exist only where trials report them to a pruner
        figures["intermediate_values"] = lambda: ov.plot_intermediate_values(study)
    ensure_dir(out)
    # Optuna switches matplotlib to its ggplot style globally; the context restores ours after.
    with plt.style.context("ggplot"):
        return _draw(figures, out)


def _draw(figures: dict[str, Callable[[], Any]], out: Path) -> list[Path]:
    import matplotlib.pyplot as plt

    optuna = optuna_module()
    saved = []
    for name, draw in figures.items():
        try:
            with warnings.catch_warnings():
                # Optuna marks its matplotlib backend experimental, and matplotlib warns about a
                # parameter that took a single value (a flat axis); neither is the user's concern.
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                warnings.filterwarnings("ignore", message="Attempting to set identical", category=UserWarning)
                # ... and its legend() finds no labelled line when every trial was pruned.
                warnings.filterwarnings("ignore", message="No artists with labels found", category=UserWarning)
                ax = draw()
            fig = (ax.flat[0] if hasattr(ax, "flat") else ax).get_figure()
            fig.set_size_inches(9, 5.5)
            with atomic_path(out / f"{name}.png") as tmp:
                fig.savefig(tmp, dpi=100, bbox_inches="tight", format="png")
            plt.close(fig)
            saved.append(out / f"{name}.png")
        except Exception as err:  # e.g. importances need 2+ completed trials with varied params
            print(f"note: no {name} plot yet ({type(err).__name__}: {first_line(str(err), 120)})")
    return saved
