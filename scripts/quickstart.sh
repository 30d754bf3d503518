#!/usr/bin/env bash
# The README's main job: a tiny continual-pretraining run on CPU over the text bundled in examples/corpora.
#   1. tokenise English, Korean and Japanese text with the Mistral-7B SentencePiece tokenizer;
#   2. train a tiny English "base model" (examples/tiny_cpu.yaml);
#   3. continue pretraining it on a 90/10 Korean+Japanese/English mix at TP=2 on two processes
#      (examples/tiny_cpu_cpt.yaml), reporting validation loss per language.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=env.sh
. "$here/env.sh"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
out=runs/quickstart
tokenizer="$(python -c 'import mistral_common, pathlib; print(pathlib.Path(mistral_common.__file__).parent / "data" / "tokenizer.model.v1")')"
mkdir -p "$out/data"
for lang in en ko ja; do
  echo "== tokenising $lang"
  python tools/preprocess_data.py --input "examples/corpora/$lang/*.jsonl" --output-prefix "$out/data/$lang" \
    --tokenizer "$tokenizer" --json-keys text --append-eod --workers 2
done
echo "== training the English base model"
python -m megacpt.train examples/tiny_cpu.yaml
echo "== continual pretraining on Korean + Japanese (90%) and English (10%), TP=2 on 2 processes"
python -m torch.distributed.run --standalone --nproc-per-node 2 -m megacpt.train examples/tiny_cpu_cpt.yaml
echo "== done: runs/quickstart/tiny_cpu_cpt/metrics.jsonl, TensorBoard logs in runs/quickstart/*/tensorboard"
