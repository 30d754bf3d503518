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
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] \
  || ! python -c "import megacpt.data._indexed_builder, megacpt.data._jsonl_scan" 2>/dev/null; then
  if ! command -v c++ >/dev/null 2>&1; then  # the extensions in csrc/ are compiled at install time
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends g++
    else
      echo "error: megacpt compiles C++ extensions at install: install a C++ compiler (e.g. apt-get install g++)" >&2
      exit 1
    fi
  fi
  python -m pip install -q -c "$REPO/scripts/constraints.txt" -e "$REPO[test,mpi,morph,clean]"
  echo "$want" > "$stamp"
fi
cd "$REPO"
