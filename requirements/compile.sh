#!/usr/bin/env bash
# Re-resolve the locks from pyproject.toml: test.lock (runtime + test + kafka extras) and
# bench.lock (that plus the benchmark peers, held to test.lock's versions where they meet).
# Pass --upgrade to move every pin to the newest release the ranges allow; without it,
# uv keeps the current pins and changes only what pyproject.toml forces.
set -euo pipefail
cd "$(dirname "$0")/.."
uv pip compile pyproject.toml --extra test --python-version 3.11 \
    -o requirements/test.lock "$@"
uv pip compile pyproject.toml --extra test --extra bench --python-version 3.11 \
    -c requirements/test.lock -o requirements/bench.lock "$@"
