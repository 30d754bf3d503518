#!/usr/bin/env bash
# The README's test command: set up .venv (created or reused), then lint, type-check and run every test.
#   bash scripts/test.sh [pytest args...]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ "$(id -u)" = 0 ]; then bash "$here/test-deps.sh"; else echo "not root: skipping system packages (scripts/test-deps.sh)"; fi
# shellcheck source=env.sh
. "$here/env.sh"
echo "== ruff"; ruff check megacpt tools tests bench && ruff format --check megacpt tools tests bench
echo "== mypy"; mypy megacpt
echo "== pytest"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
python -m pytest -q --durations=15 "$@"
