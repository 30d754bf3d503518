# Sourced by the README's commands: create or reuse .venv and install megacpt into it.
# torch is installed first and pinned, so the CPU wheel is taken rather than the CUDA one.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MEGACPT_VENV:-$REPO/.venv}"
TORCH_VERSION="${MEGACPT_TORCH_VERSION:-2.13.0}"

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
# shellcheck disable=SC1091
. "$VENV/bin/activate"
export PIP_DISABLE_PIP_VERSION_CHECK=1
if ! python -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
  python -m pip install -q "torch==$TORCH_VERSION"
fi
# Reinstall when setup.py or the C++ sources changed since the last install.
stamp="$VENV/.megacpt-install-stamp"
want="$(cat "$REPO/setup.py" "$REPO/pyproject.toml" "$REPO"/csrc/*.cpp "$REPO"/csrc/*.h 2>/dev/null | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || ! python -c "import megacpt.data._indexed_builder" 2>/dev/null; then
  python -m pip install -q -c "$REPO/scripts/constraints.txt" -e "$REPO[test,mpi,morph]"
  echo "$want" > "$stamp"
fi
cd "$REPO"
