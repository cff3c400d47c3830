"""The benchmark suite of issue 6: jobledger side by side with Celery, Huey, arq and Dramatiq.

Run it from the repository root with `python -m bench` (see docs/performance.md).
"""
