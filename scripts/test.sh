#!/usr/bin/env bash
# The README's test command: set up .venv if needed, lint, then run the default test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check doodl_pl callbacks tests scripts
exec .venv/bin/python -m pytest "$@"
