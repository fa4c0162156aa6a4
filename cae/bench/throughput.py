"""Training throughput of the reference CAE: the harness (``train_and_evaluate``) vs a bare ``model.fit``.

The harness is timed through ``train_and_evaluate`` itself: its per-epoch times
(``TrainResult.epoch_seconds``, validation included) with the first epoch, which traces the train
step, left out. XLA and mixed precision are the same call with ``train.jit_compile`` /
``train.precision`` set. The comparison is what the seed notebook did: ``model.fit`` on float32
NumPy arrays with validation data, timed per epoch the same way.
"""

from __future__ import annotations

from cae.bench.plan import BARE, VARIANTS, Plan
from cae.bench.store import Store
from cae.callbacks import epoch_timer
from cae.config import ExperimentConfig
from cae.data import Splits, load_splits, to_unit
from cae.schema import with_overrides
from cae.train import build_model, train_and_evaluate


def harness_epochs(config: ExperimentConfig, splits: Splits, repeats: int) -> list[float]:
    """Seconds of each epoch after the warm-up one, through the harness's own training call."""
    import keras

    keras.backend.clear_session()
    result = train_and_evaluate(config, splits, epochs=1 + repeats, evaluate_test=False)
    return result.epoch_seconds[1:]


def bare_fit_epochs(config: ExperimentConfig, splits: Splits, repeats: int) -> list[float]:
    """The same model, loss and optimiser with a plain ``model.fit`` on NumPy arrays."""
    import keras

    keras.backend.clear_session()
    x, v = to_unit(splits.x_train), to_unit(splits.x_val)
    model = build_model(config, splits)
    model.compile(optimizer=keras.optimizers.Adam(config.train.learning_rate), loss="mse")
    timer = epoch_timer()
    model.fit(
        x,
        x,
        batch_size=config.train.batch_size,
        epochs=1 + repeats,
        validation_data=(v, v),
        shuffle=True,
        verbose=0,
        callbacks=[timer],
    )
    return timer.seconds[1:]


def measure_throughput(plan: Plan, source: str | None, store: Store, host: str) -> None:
    """Per batch size, each variant in turn (the order repeats, so drift in load hits all alike)."""
    if not plan.batch_sizes:
        return
    splits = load_splits(source, 42, plan.images)
    for bs in plan.batch_sizes:
        config = with_overrides(ExperimentConfig(), {"train.batch_size": bs})
        for name, overrides in VARIANTS.items():
            store.get_or_measure(
                f"throughput/bs{bs}/{name}",
                lambda o=overrides, c=config: {
                    "epoch_seconds": harness_epochs(with_overrides(c, o), splits, plan.repeats),
                    "images": len(splits.x_train),
                },
                host,
            )
        store.get_or_measure(
            f"throughput/bs{bs}/{BARE}",
            lambda c=config: {
                "epoch_seconds": bare_fit_epochs(c, splits, plan.repeats),
                "images": len(splits.x_train),
            },
            host,
        )
