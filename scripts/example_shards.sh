#!/usr/bin/env bash
# Tokenise the bundled corpora (examples/corpora, CC BY-SA) into examples/shards/ with the Mistral-7B
# SentencePiece tokenizer from mistral-common: the datasets examples/data_mixture.yaml names.
#   bash scripts/example_shards.sh && python tools/data_mixture.py examples/data_mixture.yaml --tokens 100B
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=env.sh
. "$here/env.sh"
model="$(python -c 'import mistral_common, os; print(os.path.join(os.path.dirname(mistral_common.__file__), "data", "tokenizer.model.v1"))')"
for file in ko/klue_dev ja/jsquad_valid_wiki ja/jsts_jcqa_train en/wikitext2_valid; do
  lang="${file%%/*}"
  python tools/preprocess_data.py --input "examples/corpora/$file.jsonl" --output-prefix "examples/shards/${lang}_${file#*/}" \
    --tokenizer "$model" --append-eod --no-progress
done
