"""Benchmarks that print ratios measured in one run (DESIGN §9, issue 6).

``make bench`` (``python -m bench``) runs them all, prints one table and writes
``bench/results.json``. Every benchmark is an async function taking its size, so the
CI smoke test runs each one tiny; goals are judged here, never asserted in tests.
"""
