#!/usr/bin/env bash
# mypy over the installed package names (jobledger.schemas, ...). pyproject.toml maps the
# top-level folders schemas/, projections/, services/ and api/ into the jobledger package,
# and mypy cannot follow setuptools' editable finder, so this builds that package as a
# tree of symlinks in a temporary folder and checks it there. Paths in mypy's output are
# printed relative to the repository. Settings: [tool.mypy] in pyproject.toml.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
tree="$(mktemp -d)"
trap 'rm -rf "$tree"' EXIT
mkdir "$tree/jobledger"
for part in schemas projections services api; do ln -s "$repo/$part" "$tree/jobledger/$part"; done
for file in "$repo"/jobledger/*.py; do ln -s "$file" "$tree/jobledger/"; done
cd "$tree"
python -m mypy --config-file "$repo/pyproject.toml" -p jobledger "$@" \
    | sed -e "s#^jobledger/\(schemas\|projections\|services\|api\)/#\1/#" -e "s#^jobledger/#jobledger/#"
