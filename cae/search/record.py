"""What a study's trials were trained on, recorded with the study, so a resume never mixes them.

A study stores (as Optuna study user attrs) the data source and digest, the subset, the epochs and
the search space with its digest. Resuming it with any of them different is refused with one line
naming each difference and the two ways on: a new ``STUDY=``, or ``EXTEND=1`` (``--extend``) to
continue it anyway, which records the change (``extensions``: when, and each old and new value).
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from cae.data import Splits
from cae.errors import CAEError
from cae.paths import resolve
from cae.report.locations import repo_relative
from cae.search.attrs import EXTENSIONS
from cae.search_config import SearchConfig

# The study format of this release: 2 records the code size and retries through Optuna's own callback.
FORMAT, FORMAT_KEY = 2, "format"
RECORDED = ("data_source", "data_digest", "subset", "epochs", "code_values", "space", "space_digest")
# Recorded but not compared on resume: "strategy" (a study may change its sampler or pruner).


def study_record(cfg: SearchConfig, splits: Splits) -> dict[str, Any]:
    """This call's values of :data:`RECORDED`."""
    space = resolve(cfg.space)
    return {
        "data_source": splits.data_source,
        "data_digest": splits.digest,
        "subset": cfg.experiment.data.subset,
        "epochs": cfg.experiment.train.epochs,
        "code_values": cfg.code_values,
        "space": repo_relative(space),
        "space_digest": hashlib.sha256(space.read_bytes()).hexdigest()[:16],
        "strategy": cfg.strategy,  # what the replay compares a live study with (the latest call's)
    }


def differences(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Recorded keys whose value changed. The space is compared by its digest (its content): the same
    file named another way is no change."""
    changed = {k: (old.get(k), new[k]) for k in RECORDED if k != "space" and old.get(k) != new[k]}
    if "space_digest" in changed:
        changed["space"] = (old.get("space"), new["space"])
    return changed


def _said(key: str, value: Any) -> str:
    if key == "subset":
        return "the full split" if value is None else f"{value:,} images"
    return str(value)


def check_resume(study: Any, record: dict[str, Any], extend: bool) -> None:
    """Record a new study's values; refuse (or, with ``extend``, record) a resume that changes them. A study
    an older release of the harness made (it records another format) is refused in one line."""
    attrs = study.user_attrs
    # Enqueued first points are WAITING trials of a new study: only a trial that ran was trained on settings.
    started = any(t.state.name != "WAITING" for t in study.get_trials(deepcopy=False))
    if started and attrs.get(FORMAT_KEY) != FORMAT:
        raise CAEError(
            f"study {study.study_name!r} was made by an older release of the harness (study format "
            f"{attrs.get(FORMAT_KEY, 1)}, this one reads {FORMAT}); start a new study with STUDY=<new name>, or "
            f"`make delete STUDY={study.study_name}`"
        )
    changed = differences(attrs, record) if started else {}
    if changed and not extend:
        said = "; ".join(f"{k}: {_said(k, a)} -> {_said(k, b)}" for k, (a, b) in changed.items())
        raise CAEError(
            f"study {study.study_name!r} was trained on other settings than this call ({said}); start a new "
            f"study with STUDY=<new name>, or continue this one anyway with EXTEND=1 (--extend; recorded)"
        )
    if changed:
        entry = {"at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "changed": {k: list(v) for k, v in changed.items()}}
        study.set_user_attr(EXTENSIONS, [*attrs.get(EXTENSIONS, []), entry])
        print(
            f"note: extending study {study.study_name!r} with changed settings "
            f"({', '.join(changed)}); recorded in its `extensions` attribute",
            flush=True,
        )
    for key, value in {**record, FORMAT_KEY: FORMAT}.items():
        if attrs.get(key) != value:
            study.set_user_attr(key, value)
