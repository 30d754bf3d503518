#!/usr/bin/env bash
# The README's main job: the whole continual-pretraining pipeline on CPU over the text bundled in
# examples/corpora (clean -> tokenise -> expand the Mistral tokenizer with Korean and Japanese -> a tiny
# English base model as an HF checkpoint -> HF -> Megatron -> resize -> the eeve stages at TP=2 on two
# processes -> HF -> report). Everything lands in runs/quickstart/; see megacpt/pipeline/quickstart.py.
#   bash scripts/quickstart.sh [--out DIR] [--base-steps N] [--cpt-steps N] ...
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=env.sh
. "$here/env.sh"
python -m megacpt.pipeline.quickstart "$@"
