"""Benchmarks of Inpaint Queue. Each prints its figures and a ratio measured side by side in one run.

Run them as modules from the repository root, with the project's virtual environment:

    .venv/bin/python -m benchmarks.api_throughput --help
    .venv/bin/python -m benchmarks.isolation --help
    .venv/bin/python -m benchmarks.overhead --help
    .venv/bin/python -m benchmarks.service_vs_raw --help
    .venv/bin/python -m benchmarks.gpu --help

They live outside tests/ so pytest never collects them, and nothing here asserts a speed.
Figures, commands and the machine they were taken on: docs/performance.md.
"""
