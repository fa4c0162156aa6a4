"""`make bench`: measuring (one module per section) apart from rendering (``render``).

- ``plan``: the full and quick settings and the strategies compared.
- ``store``: the raw measurements (``results/bench/<mode>.json``), written after each one and
  validated when read, so a killed benchmark resumes where it stopped.
- ``studies``: one search (Optuna or keras-tuner) run through the real ``run_search`` /
  ``run_tuner`` in the benchmark's own stores under ``runs/bench/``, read back as a trial timeline.
- ``efficiency``, ``fidelity``, ``workers``, ``throughput``, ``gpu``: the sections' measurements.
- ``analysis``: the numbers the report states (targets, ratios, verdicts), pure functions.
- ``figures`` and ``render``: the plot and ``BENCHMARKS.md``, from the raw JSON only.
- ``run``: ``run_bench(quick, data)``, what ``make bench`` calls.
"""
