"""The search engines and what they share. They know no stage: a study's trials train a
:class:`~cae.search.task.Task`, which :mod:`cae.stages` picks by name.

- ``task``: the stage seam (:class:`Task`, :class:`TrialOutcome`) and the reconstruction task;
- ``trial``: one trial's lifecycle for both engines (tracked run, record, export, its lines);
- ``objective``: the Optuna objective (sample, build, skip what cannot run, train);
- ``study``: the Optuna study (sampler, pruner, counts); ``storage``: the storage; ``outage``: riding
  out the database's absence (the study's, and an MLflow store's on a database server);
- ``workers``: processes that take trials until the budget is reached, on one host or several;
- ``run``: the coordinator behind ``make search`` (prepare, run workers, finalise);
- ``best``: the exported best trial (``best.json`` / ``best.keras``), engine-free;
- ``figures``: Optuna's plots; ``tuner``: keras-tuner as the second engine over the same space.
"""
