"""`make bench`: measuring apart from rendering.

- ``speed``: training speed of the reference CAE (harness vs a bare ``model.fit``; XLA, mixed precision; GPU);
- ``table``: the learning-curve table of the default space (hours, resumable);
- ``replay`` and ``replay_report``: search strategies replayed over the table, 50 seeds each, and their report;
- ``render``: BENCHMARKS.md from the measurements alone;
- ``run``: ``run_bench(plan, data)``, what ``make bench`` calls.
"""
