"""Benchmarks of idphoto-async against the QPS bound and naive peer baselines.

Run ``python -m benchmarks [--quick] [--scenario NAME] [--repeat N]``; see ``docs/performance.md``.
Each run starts the local server as its own uvicorn process and each client in its own
subprocess (so that its CPU time and RSS are its own).
"""
