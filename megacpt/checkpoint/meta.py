"""The checkpoint format's own files, in one place: ``megacpt.json`` and the ``latest`` marker.

Every megacpt checkpoint directory (a converted model, a resized one, a training checkpoint
``iter_N``) is a Megatron-core ``dist_checkpointing`` directory plus ``megacpt.json``: the true
vocabulary size, the model config, and where it came from (the original Hugging Face config, the
tokenizer). A checkpoint root holds ``iter_N`` directories and ``latest``, the name of the newest
complete one. Converters, the resize, the trainer and the config loader all read these through
this module.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any

from megacpt.atomic import write_atomic
from megacpt.compat.dcp import METADATA_PICKLE_GLOBALS, METADATA_PICKLE_MODULES
from megacpt.errors import UserError

META = "megacpt.json"
LATEST = "latest"
HF_SUBDIR = "hf"  # the tokenizer and generation config that travel with every checkpoint


def checkpoint_name(step: int) -> str:
    return f"iter_{step:07d}"


def is_checkpoint(path: str | os.PathLike) -> bool:
    return (Path(path) / META).is_file()


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The ``megacpt.json`` of a checkpoint, with a clear error when it is not one."""
    file = Path(path) / META
    if not file.is_file():
        raise UserError(f"{path} is not a megacpt checkpoint (no {META})")
    try:
        meta = json.loads(file.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{file}: not readable JSON ({err})") from None
    if not isinstance(meta, dict) or "model" not in meta or "vocab_size" not in meta:
        raise UserError(f"{file} lacks the model config; convert the model with tools/convert_checkpoint.py")
    return meta


def check_merged(meta: dict[str, Any], path: str | os.PathLike) -> None:
    """Refuse a checkpoint that holds a LoRA stage's adapters unmerged (saved in the middle of the
    stage): only the run that wrote it can use it, by resuming. Its stage's end checkpoint is plain."""
    if meta.get("lora"):
        raise UserError(
            f"{path} was saved in the middle of a LoRA stage and holds its adapters unmerged: resume that "
            "run to the stage's end, or use a checkpoint from a stage's end"
        )


def write_meta(path: str | os.PathLike, meta: dict[str, Any]) -> None:
    write_atomic(Path(path) / META, json.dumps(meta, indent=2) + "\n")


def latest_checkpoint(root: str | os.PathLike) -> Path | None:
    """The checkpoint ``root/latest`` names, if it is complete; None otherwise."""
    marker = Path(root) / LATEST
    if not marker.is_file():
        return None
    path = Path(root) / marker.read_text().strip()
    return path if is_checkpoint(path) else None


def resolve(path: str | os.PathLike) -> Path:
    """A checkpoint directory, or the checkpoint a root's ``latest`` names (Megatron-Bridge's habit)."""
    return latest_checkpoint(path) or Path(path)


# -- reading checkpoint files without running code ------------------------------------------------
# Torch DCP stores a checkpoint's index (``.metadata``) as a pickle and loads its non-tensor items
# with ``torch.load(weights_only=False)``: a crafted checkpoint would run code when loaded. Every
# megacpt reader first checks the files here: ``.metadata`` through an unpickler that only builds
# DCP's own metadata classes, every non-tensor item with ``torch.load(weights_only=True)``.
_verified: set[tuple[str, int]] = set()


class _Forbidden(pickle.UnpicklingError):
    """A global outside the allowlist: the pickle would build (or run) something else."""


class _MetadataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        import torch

        allowed = (
            module in METADATA_PICKLE_MODULES
            or (module, name) in METADATA_PICKLE_GLOBALS
            or (module == "torch" and isinstance(getattr(torch, name, None), torch.dtype))
        )
        if not allowed:
            raise _Forbidden(f"{module}.{name}")
        return super().find_class(module, name)


def load_dcp_metadata(path: str | os.PathLike) -> Any:
    """A checkpoint's ``.metadata``, unpickled without running code; a bad one is a ``UserError``."""
    file = Path(path) / ".metadata"
    try:
        with file.open("rb") as handle:
            return _MetadataUnpickler(handle).load()
    except FileNotFoundError:
        raise UserError(f"{path} is not a complete checkpoint (no .metadata)") from None
    except _Forbidden as err:
        raise UserError(
            f"refusing to read {file}: it names {err}, which no checkpoint index holds (a pickle that would run code)"
        ) from None
    except Exception as err:  # a truncated or corrupt pickle raises any of a dozen types
        raise UserError(f"{file} is corrupt ({type(err).__name__}: {err})") from None


def verify_files(path: str | os.PathLike) -> None:
    """Check a checkpoint's index and non-tensor items load without running code (once per process)."""
    import io

    import torch
    from torch.distributed.checkpoint.metadata import BytesStorageMetadata

    index_file = Path(path) / ".metadata"
    key = (str(index_file.resolve()), index_file.stat().st_mtime_ns if index_file.exists() else 0)
    if key in _verified:
        return
    metadata = load_dcp_metadata(path)
    _check_sizes(Path(path), metadata)
    items = {k for k, v in metadata.state_dict_metadata.items() if isinstance(v, BytesStorageMetadata)}
    for index, info in metadata.storage_data.items():
        if index.fqn not in items:
            continue
        data_file = Path(path) / info.relative_path
        try:
            with data_file.open("rb") as handle:
                handle.seek(info.offset)
                blob = handle.read(info.length)
            torch.load(io.BytesIO(blob), weights_only=True)
        except OSError as err:
            raise UserError(f"{data_file}: cannot read ({err.strerror})") from None
        except Exception as err:
            raise UserError(
                f"refusing to load {path}: item {index.fqn} in {info.relative_path} is not plain data "
                f"({type(err).__name__}: {str(err).splitlines()[0][:200]})"
            ) from None
    _verified.add(key)


def _check_sizes(path: Path, metadata: Any) -> None:
    """Every data file the index names exists and holds the bytes the index gives it (a truncated or
    missing ``.distcp`` is found here, in seconds, rather than as a traceback mid-load)."""
    needed: dict[str, int] = {}
    for info in metadata.storage_data.values():
        needed[info.relative_path] = max(needed.get(info.relative_path, 0), info.offset + info.length)
    for name, size in sorted(needed.items()):
        file = path / name
        if not file.is_file():
            raise UserError(f"{path} is incomplete: {name} is missing")
        if file.stat().st_size < size:
            raise UserError(f"{file} is truncated: {file.stat().st_size:,} bytes, its index needs {size:,}")


def complete_checkpoints(root: str | os.PathLike) -> list[Path]:
    """The complete ``iter_N`` checkpoints under ``root`` (``megacpt.json`` and ``.metadata``), oldest first."""
    found = [
        p
        for p in Path(root).glob("iter_*")
        if p.is_dir() and p.name[5:].isdigit() and is_checkpoint(p) and (p / ".metadata").is_file()
    ]
    return sorted(found, key=lambda p: int(p.name[5:]))


def resume_checkpoint(root: str | os.PathLike) -> tuple[Path | None, str | None]:
    """The checkpoint a run in ``root`` resumes from, and a note when it is not what ``latest`` names.

    A ``latest`` that names a missing or incomplete checkpoint falls back to the newest complete
    one; with none left, a run refuses to start over on top of what remains (``UserError``).
    """
    marker = Path(root) / LATEST
    complete = complete_checkpoints(root)
    named = Path(root) / marker.read_text().strip() if marker.is_file() else None
    if named is not None and named in complete:
        return named, None
    if complete:
        why = (
            f"{marker} names {named.name}, which is not a complete checkpoint"
            if named
            else f"{marker} is missing"
        )
        return complete[-1], f"{why}: resuming from the newest complete one, {complete[-1].name}"
    if named is not None:
        raise UserError(
            f"{marker} names {named.name}, which is not a complete checkpoint, and none remains in {root}: "
            "delete that directory to start over, or point checkpoint.save_dir elsewhere"
        )
    return None, None
