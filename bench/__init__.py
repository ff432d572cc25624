"""Benchmarks for the dog-breed classifier: model speed, preprocessing, serving path, Lambda, training, cost.

``python -m bench`` (``make bench``) runs them all and writes ``docs/benchmarks.md``, ``docs/benchmarks.json``
and ``docs/img/bench-*.png``; ``python -m bench.cost`` turns throughput into cost and scaling targets.
"""
