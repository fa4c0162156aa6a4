"""`cae compare`: trial loss curves side by side, read from MLflow (any tracking server).

Selects the top k trials of one or more studies by best validation MSE (a colorization study:
validation PSNR), explicit trial numbers, or explicit run ids; overlays their per-epoch curves in
one PNG and writes the table as CSV; both are logged to the study's parent run and written under
``runs/<study>/report/``.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cae.errors import CAEError
from cae.paths import atomic_path, ensure_dir, report_dir
from cae.tracking import SIZE_PARAMS, Run, Tracker

# lazy: cae.plots (matplotlib, ~0.6 s) is imported where a figure is drawn: reading the runs and the table need none.

STATES = ("COMPLETE", "PRUNED")


@dataclass
class TrialRow:
    study: str
    trial: int
    state: str
    run_id: str
    params: dict[str, str]
    best_val: float
    seconds: float
    history: dict[str, list[tuple[int, float]]] = field(default_factory=dict)

    @property
    def epochs_run(self) -> int:
        return len(self.history.get("val_loss", []))

    @property
    def sampled(self) -> dict[str, str]:
        """The trial's sampled keys, as its search space names them (every key of the space).

        Values computed from them (``n_params``, ``derived.*`` of a `cae train` run compared by
        run id) are not sampled keys: they get their own columns or none.
        """
        return {k: v for k, v in self.params.items() if k not in SIZE_PARAMS and not k.startswith("derived.")}

    def label(self, with_study: bool, keys: Sequence[str] | None = None) -> str:
        """``#3 depth=2 filters=31 (0.06045) PRUNED``: ``keys`` (default all sampled keys) with their values."""
        shown = self.sampled if keys is None else {k: self.sampled[k] for k in keys if k in self.sampled}
        short = " ".join(f"{k.split('.')[-1]}={_short(v)}" for k, v in shown.items())
        text = f"#{self.trial} {short} ({self.best_val:.5f})"
        if self.state != "COMPLETE":
            text += f" {self.state}"
        return f"{self.study} {text}" if with_study else text

    def row(self) -> dict[str, Any]:
        p = self.params
        codes = [int(p[k]) for k in ("latent_values", "bottleneck_values") if p.get(k)]
        return {
            "study": self.study,
            "trial": self.trial,
            "state": self.state,
            **self.sampled,
            "n_params": p.get("n_params", ""),
            "code_values": min(codes) if codes else "",
            "best_val_loss": f"{self.best_val:.6g}",
            "epochs_run": self.epochs_run,
            "seconds": round(self.seconds, 1),
            "run_id": self.run_id,
        }


def _short(value: str) -> str:
    try:
        number = float(value)
    except ValueError:
        return value
    return f"{number:.2g}" if not number.is_integer() else str(int(number))


def columns(rows: Sequence[TrialRow]) -> list[str]:
    """Every key any row has: a key new to a space shows up without code changes.

    The sampled keys (first-seen order, across rows that may come from different spaces) stay
    together between the trial's identity and its scores.
    """
    head = ["study", "trial", "state"]
    sampled = list(dict.fromkeys(k for r in rows for k in r.sampled))
    tail = [k for k in dict.fromkeys(k for r in rows for k in r.row()) if k not in head and k not in sampled]
    return head + sampled + tail


def _row(run: Any, tracker: Tracker, study: str) -> TrialRow:
    history = {k: tracker.metric_history(run.info.run_id, k) for k in ("train_loss", "val_loss")}
    if not history["val_loss"]:
        raise CAEError(
            f"run {run.info.run_id} (trial {run.data.tags.get('trial_number')}) has no 'val_loss' "
            "history; it logged: " + (", ".join(sorted(run.data.metrics)) or "no metrics")
        )
    best = run.data.metrics.get("best_val_loss", min(v for _, v in history["val_loss"]))
    end = run.info.end_time or run.info.start_time
    return TrialRow(
        study,
        int(run.data.tags.get("trial_number", -1)),
        run.data.tags.get("trial_state", "?"),
        run.info.run_id,
        dict(run.data.params),
        float(best),
        (end - run.info.start_time) / 1000,
        history,
    )


def study_runs(tracker: Tracker, study: str) -> tuple[str, list[Any]]:
    """(parent run id, child runs) of a study; one-line errors naming what exists instead."""
    parent = tracker.find_study_parent(study)
    if parent is None:
        names = [n for n in tracker.experiment_names() if n != "Default"]
        there = ", ".join(names) or "none"
        raise CAEError(f"no study {study!r} in MLflow store {tracker.shown}; studies there: {there}")
    runs = tracker.child_runs(parent, study)
    if not runs:
        raise CAEError(f"study {study!r} has no trial runs yet in {tracker.shown}; run `make search STUDY={study}`")
    return parent, runs


def rank_key(run: Any) -> float:
    """Lower is better. A colorization study's trials train different losses (MSE, L1, Huber,
    cross-entropy), so they are ranked by validation PSNR; a reconstruction's by best_val_loss."""
    metrics = run.data.metrics
    if run.data.tags.get("stage") == "colorization" and "val_psnr" in metrics:
        return -metrics["val_psnr"]
    return metrics["best_val_loss"]


def select(
    tracker: Tracker,
    studies: Sequence[str],
    *,
    top: int = 5,
    trial_ids: Sequence[int] = (),
    run_ids: Sequence[str] = (),
    states: Sequence[str] = STATES,
) -> list[TrialRow]:
    """The trials to compare, best first (or in the order asked for)."""
    if run_ids:
        rows = []
        for rid in run_ids:
            run = tracker.get_run(rid)
            rows.append(_row(run, tracker, run.data.tags.get("study", "?")))
        return rows
    rows = []
    for study in studies:
        _, runs = study_runs(tracker, study)
        if trial_ids:
            by_number = {int(r.data.tags["trial_number"]): r for r in runs if "trial_number" in r.data.tags}
            missing = [t for t in trial_ids if t not in by_number]
            if missing and len(studies) == 1:
                raise CAEError(
                    f"trial {missing[0]} is not in study {study!r}; its trials: "
                    f"{', '.join(map(str, sorted(by_number)))}"
                )
            rows += [_row(by_number[t], tracker, study) for t in trial_ids if t in by_number]
            continue
        eligible = [r for r in runs if r.data.tags.get("trial_state") in states and r.data.metrics.get("best_val_loss")]
        eligible.sort(key=rank_key)
        if not eligible:
            found = sorted({r.data.tags.get("trial_state", "?") for r in runs})
            raise CAEError(
                f"study {study!r} has no {'/'.join(states)} trials with a best_val_loss; states there: "
                + ", ".join(found)
            )
        rows += [_row(r, tracker, study) for r in eligible[:top]]
    return rows


def varying_keys(rows: Sequence[TrialRow]) -> list[str]:
    """The sampled keys in which ``rows`` differ, in column order: what a plot's labels name.

    A space has a dozen keys; labels with all of them hid the curves (the CSV keeps every key).
    """
    sampled = {k for r in rows for k in r.sampled}
    return [k for k in columns(rows) if k in sampled and len({r.sampled.get(k) for r in rows}) > 1]


def plot(rows: Sequence[TrialRow], path: Path, *, log_y: bool = True, title: str = "") -> Path:
    """Validation curves (solid) and train curves (dashed, same colour); pruned trials end in ×."""
    from cae.plots import save

    return save(figure(rows, log_y=log_y, title=title), path)


def figure(rows: Sequence[TrialRow], *, log_y: bool = True, title: str = "") -> Any:
    """The comparison figure itself (see :func:`plot`)."""
    from cae.plots import epoch_axis, plt

    fig, ax = plt.subplots(figsize=(10, 5.8))
    with_study = len({r.study for r in rows}) > 1
    keys = varying_keys(rows)
    colours = plt.get_cmap("tab10" if len(rows) <= 10 else "tab20")
    for i, r in enumerate(rows):
        colour = colours(i % colours.N)
        steps, values = zip(*r.history["val_loss"], strict=True)
        ax.plot(steps, values, "-o", color=colour, ms=4, lw=1.8, label=r.label(with_study, keys))
        if r.history.get("train_loss"):  # markers too: a one-epoch curve is a single point
            t_steps, t_values = zip(*r.history["train_loss"], strict=True)
            ax.plot(t_steps, t_values, "--s", color=colour, ms=3, lw=1, alpha=0.8)
        if r.state == "PRUNED":
            ax.plot(steps[-1], values[-1], "x", color=colour, ms=11, mew=2.5)
    ax.plot([], [], "k-o", ms=4, label="validation (solid)")
    if any(r.history.get("train_loss") for r in rows):  # a legend names only what is drawn
        ax.plot([], [], "k--s", ms=3, label="train (dashed)")
    if any(r.state == "PRUNED" for r in rows):
        ax.plot([], [], "kx", ms=9, mew=2, ls="none", label="pruned here")
    ax.set(xlabel="epoch", ylabel="MSE ([0,1] pixels)", title=title or f"{len(rows)} trials' loss curves")
    if log_y:
        ax.set_yscale("log")
    epoch_axis(ax, max(step for r in rows for step, _ in r.history["val_loss"]))
    ax.grid(alpha=0.3, which="both")
    # Below the axes: labels are long and must not hide the curves.
    ax.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(0, -0.12), frameon=False)
    return fig


def drawn(
    rows: Sequence[TrialRow], studies: Sequence[str], top: int, trial_ids: Sequence[int], run_ids: Sequence[str]
) -> str:
    """What the figure shows, counted: a title never says "top 3" over five curves."""
    n = f"{len(rows)} trial{'s' if len(rows) != 1 else ''}"
    if run_ids:
        return f"{n}, selected runs"
    if trial_ids:
        return f"{n}: {', '.join(str(t) for t in trial_ids)}"
    if len(studies) > 1:
        return f"{n}, the best {top} (or fewer) of each of {len(studies)} studies by best validation MSE"
    if len(rows) < top:  # fewer trials than asked for: every one of them is drawn
        return f"all {n}, by best validation MSE"
    return f"{n}, the best {top} by best validation MSE"


def write_csv(rows: Sequence[TrialRow], path: Path) -> Path:
    with atomic_path(path) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns(rows), restval="")
        writer.writeheader()
        writer.writerows(r.row() for r in rows)
    return path


def format_table(rows: Sequence[TrialRow]) -> str:
    cols = [c for c in columns(rows) if c != "run_id"]
    table = [[c.split(".")[-1] for c in cols]] + [[_short(str(r.row().get(c, ""))) for c in cols] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(cols))]
    return "\n".join("  ".join(v.rjust(w) for v, w in zip(line, widths, strict=True)) for line in table)


def compare(
    studies: Sequence[str],
    *,
    top: int = 5,
    trial_ids: Sequence[int] = (),
    run_ids: Sequence[str] = (),
    states: Sequence[str] = STATES,
    log_y: bool = True,
    out_dir: Path | None = None,
    tracker: Tracker | None = None,
) -> tuple[list[TrialRow], Path, Path]:
    """Select, plot, tabulate; log both files to the (first) study's parent run."""
    tracker = tracker or Tracker()
    bad = [s for s in states if s not in ("COMPLETE", "PRUNED", "FAIL")]
    if bad:
        raise CAEError(f"unknown trial state {bad[0]!r}; allowed: COMPLETE, PRUNED, FAIL")
    rows = select(tracker, studies, top=top, trial_ids=trial_ids, run_ids=run_ids, states=states)
    name = "+".join(dict.fromkeys(r.study for r in rows)) or "runs"
    out_dir = ensure_dir(out_dir or report_dir(name))
    title = f"{name}: {drawn(rows, studies, top, trial_ids, run_ids)}"
    png = plot(rows, out_dir / "compare.png", log_y=log_y, title=title)
    csv_path = write_csv(rows, out_dir / "compare.csv")
    for study in dict.fromkeys(r.study for r in rows):
        parent = tracker.find_study_parent(study)
        if parent is not None:
            run = Run(tracker, parent)
            run.log_artifact(png, "compare")
            run.log_artifact(csv_path, "compare")
    return rows, png, csv_path
