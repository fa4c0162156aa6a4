"""The search engines and what they share.

- ``study``: the Optuna study (storage, sampler, pruner, counts);
- ``objective``: one trial (sample, build, skip, train as a tracked trial), and the tasks it trains;
- ``workers``: processes that take trials until the budget is reached, on one host or several;
- ``run``: the coordinator behind ``make search`` (prepare, run workers, finalise);
- ``best``: the exported best trial (``best.json`` / ``best.keras``), engine-free;
- ``figures``: Optuna's plots; ``tags``: what the runs are tagged with;
- ``tuner``: keras-tuner as the second engine over the same search space.
"""
