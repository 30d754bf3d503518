"""Checks that a config can run on a given world size, before any process group starts."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from megacpt.atomic import check_writable
from megacpt.config.schema import Config, ModelConfig
from megacpt.errors import UserError


def transformer_engine_available() -> bool:
    """True when Transformer Engine's PyTorch package can be imported."""
    return importlib.util.find_spec("transformer_engine") is not None


def data_parallel_size(config: Config, world_size: int) -> int:
    """The data-parallel size implied by the layout and the world size."""
    p = config.parallel
    model_parallel = p.tensor_model_parallel_size * p.pipeline_model_parallel_size * p.context_parallel_size
    if model_parallel < 1 or world_size % model_parallel:
        raise UserError(
            f"world size {world_size} is not divisible by TP x PP x CP = "
            f"{p.tensor_model_parallel_size} x {p.pipeline_model_parallel_size} x {p.context_parallel_size}"
        )
    return world_size // model_parallel


def check_model_split(model: ModelConfig, tp: int, pp: int, vp: int | None = None) -> None:
    """Raise ``UserError`` when ``model``'s heads, query groups, FFN and layers do not divide TP x PP
    (x VP): the checks a checkpoint conversion needs, with no run config."""
    m = model
    groups = m.groups
    if m.num_attention_heads % groups:
        raise UserError(
            f"num_attention_heads {m.num_attention_heads} is not divisible by num_query_groups {groups}"
        )
    if m.num_attention_heads % tp:
        raise UserError(
            f"tensor_model_parallel_size {tp} does not divide num_attention_heads {m.num_attention_heads}"
        )
    if groups % tp:
        raise UserError(f"tensor_model_parallel_size {tp} does not divide num_query_groups {groups}")
    if m.kv_channels is None and m.hidden_size % m.num_attention_heads:
        raise UserError(
            f"hidden_size {m.hidden_size} is not divisible by num_attention_heads {m.num_attention_heads}"
        )
    ffn = m.ffn
    if ffn % tp:
        raise UserError(f"tensor_model_parallel_size {tp} does not divide ffn_hidden_size {ffn}")
    stages = pp * (vp or 1)
    if m.num_layers % stages:
        raise UserError(f"num_layers {m.num_layers} is not divisible by PP x VP = {pp} x {vp or 1}")


def validate_layout(config: Config, world_size: int, *, this_machine: bool = True) -> None:
    """Raise ``UserError`` for a layout that cannot work: the model's split, batch, sequence, features.

    ``this_machine=False`` (a dry run for another machine) skips what depends on what is installed here.
    """
    m, p, t = config.model, config.parallel, config.training
    tp, pp, vp = (
        p.tensor_model_parallel_size,
        p.pipeline_model_parallel_size,
        p.virtual_pipeline_model_parallel_size,
    )
    check_model_split(m, tp, pp, vp)
    if vp is not None and (vp < 1 or pp < 3):
        # With two stages, each rank's previous and next stage are the same peer, and the interleaved
        # schedule's forward activations and backward gradients (same shape) are matched out of order:
        # the losses are silently wrong (seen on gloo; Megatron-LM also asks for PP > 2).
        raise UserError("virtual_pipeline_model_parallel_size needs pipeline_model_parallel_size >= 3")
    dp = data_parallel_size(config, world_size)
    if t.micro_batch_size < 1 or t.global_batch_size % (t.micro_batch_size * dp):
        raise UserError(
            f"global_batch_size {t.global_batch_size} is not divisible by micro_batch_size x DP = "
            f"{t.micro_batch_size} x {dp}"
        )
    seq = config.data.seq_length
    if p.sequence_parallel and tp > 1 and seq % tp:
        raise UserError(f"sequence_parallel needs seq_length {seq} divisible by TP {tp}")
    if p.context_parallel_size > 1 and seq % (2 * p.context_parallel_size):
        raise UserError(
            f"seq_length {seq} is not divisible by 2 x context_parallel_size {p.context_parallel_size}"
        )
    if seq > m.max_position_embeddings:
        raise UserError(f"seq_length {seq} exceeds max_position_embeddings {m.max_position_embeddings}")
    if p.overlap_param_gather and not p.use_distributed_optimizer:
        raise UserError("overlap_param_gather needs use_distributed_optimizer")
    if this_machine and p.context_parallel_size > 1 and not transformer_engine_available():
        raise UserError(
            "context_parallel_size > 1 needs Transformer Engine's attention, which is not installed"
        )
    if this_machine and config.precision.fp8 and not transformer_engine_available():
        raise UserError(
            "precision.fp8 needs Transformer Engine, which is not installed (pip install megacpt[gpu])"
        )
    if config.precision.fp8 and m.transformer_impl == "local":
        raise UserError("precision.fp8 needs model.transformer_impl 'transformer_engine' or 'auto'")


def data_sources(config: Config) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(mixture files, dataset prefixes) the run reads (training, validation, each stage's, each
    mixture file's entries), each as ``(where, path)``; a mixture file that is missing is refused."""
    from megacpt.data.mixture.spec import DataMixture

    d = config.data
    named = [(f"data.datasets[{i}]", e.prefix) for i, e in enumerate(d.datasets)]
    named += [(f"data.valid_datasets[{i}]", e.prefix) for i, e in enumerate(d.valid_datasets)]
    mixture_files = [("data.mixture_file", d.mixture_file)]
    for j, stage in enumerate(config.schedule.stages):
        named += [
            (f"schedule.stages[{j}].datasets[{i}]", e.prefix) for i, e in enumerate(stage.datasets or [])
        ]
        mixture_files.append((f"schedule.stages[{j}].mixture_file", stage.mixture_file))
    files = [(where, file) for where, file in mixture_files if file is not None]
    for where, file in files:
        if not Path(file).is_file():
            raise UserError(f"{where}: data mixture file not found: {file}")
        named += [(f"{file} entry {i}", e.prefix) for i, e in enumerate(DataMixture.from_yaml(file).entries)]
    return files, named


def validate_data(config: Config) -> None:
    """Raise ``UserError`` for a dataset the run would read (training, validation, each stage's, each
    mixture file's) that is missing, corrupt, or holds ids outside ``model.vocab_size``."""
    from megacpt.data.checks import check_dataset
    from megacpt.data.mixture.spec import check_training_part

    d = config.data
    if not d.datasets and not d.mixture_file:
        raise UserError("no training data: set data.datasets or data.mixture_file")
    for name in ("eod_id", "pad_id"):
        if getattr(d, name) >= config.model.vocab_size:
            raise UserError(
                f"data.{name} is {getattr(d, name):,}, outside the model's vocabulary of "
                f"{config.model.vocab_size:,} tokens (model.vocab_size)"
            )
    _, named = data_sources(config)
    checked: set[str] = set()
    for where, prefix in named:
        if prefix in checked:
            continue
        for suffix in (".bin", ".idx"):
            if not Path(prefix + suffix).is_file():
                raise UserError(f"{where}: missing data file {prefix + suffix}")
        check_dataset(prefix, config.model.vocab_size, where, config.data.eod_id)
        if not where.startswith("data.valid_datasets"):
            check_training_part(prefix, d.split, where)
        checked.add(prefix)


def validate(config: Config, world_size: int) -> None:
    """All checks a run needs before it starts."""
    validate_layout(config, world_size)
    validate_data(config)


# Model fields that change what the weights compute: a run must agree with its checkpoint on each.
ARCHITECTURE_FIELDS = (
    "num_layers",
    "hidden_size",
    "num_attention_heads",
    "num_query_groups",
    "ffn_hidden_size",
    "kv_channels",
    "vocab_size",
    "normalization",
    "norm_epsilon",
    "activation",
    "add_bias_linear",
    "add_qkv_bias",
    "rotary_base",
    "rotary_percent",
    "rope_scaling",
    "parallel_attention_mlp",
    "output_layer_bias",
    "tie_embeddings",
)


def check_model_matches(config: Config, meta: dict, where: str) -> None:
    """Raise ``UserError`` naming the first architecture field where ``config.model`` and the
    checkpoint's ``megacpt.json`` (``meta``) disagree, derived fields compared resolved (an unset
    ``kv_channels`` is hidden // heads on both sides)."""
    import dataclasses

    from megacpt.config.loader import from_dict

    mine = dataclasses.asdict(config.model.resolved())
    theirs = meta.get("model") or {}
    try:
        theirs = dataclasses.asdict(from_dict(ModelConfig, theirs, "model").resolved())
    except UserError as err:
        raise UserError(f"{where}: its megacpt.json has no valid model section ({err})") from None
    for name in ARCHITECTURE_FIELDS:
        if _same(mine.get(name), theirs[name]):
            continue
        raise UserError(
            f"model.{name} is {mine.get(name)!r} but {where} was made with {theirs[name]!r} "
            "(set it to match, or use model: from_checkpoint)"
        )


def _same(mine: object, theirs: object) -> bool:
    if isinstance(mine, float) and isinstance(theirs, int | float) and not isinstance(theirs, bool):
        return abs(mine - theirs) <= 1e-9 * max(abs(theirs), 1.0)
    return mine == theirs


def validate_checkpoints(config: Config) -> None:
    """The pretrained checkpoint matches the model and loads without running code; the checkpoint
    and run directories are writable. Reads metadata only, so it costs seconds at any scale."""
    from megacpt.checkpoint.meta import check_merged, read_meta, resolve, verify_files

    c = config.checkpoint
    if c.pretrained:
        path = resolve(c.pretrained)
        meta = read_meta(path)
        check_merged(meta, path)
        check_model_matches(config, meta, f"checkpoint.pretrained {path}")
        verify_files(path)
    check_writable(Path(config.logging.run_dir))
    check_writable(Path(c.save_dir or Path(config.logging.run_dir) / "checkpoints"))
