#!/usr/bin/env bash
# The Python package (python/): installed from the checkout into a fresh venv
# with Debian's packages only (no index), then its pytest suite. Needs
# build/liblmpress.so (scripts/setup.sh builds it).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PY" -m venv --system-site-packages "$tmp/venv"
"$tmp/venv/bin/pip" install -q --no-build-isolation --no-index ./python
"$tmp/venv/bin/python" -m pytest -q python/tests "$@"
