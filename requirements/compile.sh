#!/usr/bin/env bash
# Re-resolve the locks from pyproject.toml: test.txt (runtime + test + kafka extras) and
# bench.txt (that plus the benchmark peers, held to test.txt's versions where they meet).
# Pass --upgrade to move every pin to the newest release the ranges allow; without it,
# uv keeps the current pins and changes only what pyproject.toml forces.
set -euo pipefail
cd "$(dirname "$0")/.."
uv pip compile pyproject.toml --extra test --python-version 3.11 \
    -o requirements/test.txt "$@"
uv pip compile pyproject.toml --extra test --extra bench --python-version 3.11 \
    -c requirements/test.txt -o requirements/bench.txt "$@"
