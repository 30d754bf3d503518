#!/usr/bin/env bash
# The wheels bench/gpu/kit.py installs on the lent GPU machine (Python 3.12, PyTorch there, no network):
# Megatron-core and the packages megacpt imports that the machine's image lacks. Into .whl/ (git ignores
# it; ~8 MB, inside a device call's 64 MiB), for the call's `carry`.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \
  megatron-core==0.16.1 zstandard==0.25.0 dill==0.4.1
ls -la .whl
