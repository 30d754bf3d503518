"""Write a Hugging Face tokenizer directory that loads the same way in transformers 4.x and 5.x.

transformers 5 records its own ``TokenizersBackend`` class and the load-time flags ``is_local`` /
``local_files_only`` in ``tokenizer_config.json``; 4.x knows neither. Every tokenizer megacpt
writes (expansions, GGUF imports) goes through ``save_tokenizer`` so the files stay portable.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

_LOAD_TIME_ONLY = ("is_local", "local_files_only")


def save_tokenizer(tokenizer: Any, out_dir: Path, tokenizer_class: str | None = None) -> None:
    """``tokenizer.save_pretrained(out_dir)``, then a portable ``tokenizer_config.json``.

    ``tokenizer_class`` replaces the recorded class (``PreTrainedTokenizerFast`` for a plain
    ``tokenizer.json``; a ``TokenizersBackend`` record becomes that by default).
    """
    tokenizer.save_pretrained(out_dir)
    path = out_dir / "tokenizer_config.json"
    saved = json.loads(path.read_text(encoding="utf-8"))
    for key in _LOAD_TIME_ONLY:
        saved.pop(key, None)
    if tokenizer_class is not None:
        saved["tokenizer_class"] = tokenizer_class
    elif saved.get("tokenizer_class") == "TokenizersBackend":
        saved["tokenizer_class"] = "PreTrainedTokenizerFast"
    path.write_text(json.dumps(saved, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
