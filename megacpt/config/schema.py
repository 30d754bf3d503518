"""Typed configuration of a megacpt run: one dataclass per component.

Field names follow Megatron's vocabulary (``tensor_model_parallel_size``, ``num_query_groups``,
``make_vocab_size_divisible_by``…) so that a Megatron-LM user recognises them. Every field has a
type that the loader enforces, and each section checks its own ranges when it is built
(``__post_init__``). Checks that need the world size, the data or a checkpoint live in
``megacpt.config.validate``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Literal

from megacpt.config.checks import above, at_least, below, exclusive, not_above
from megacpt.errors import UserError

# The published recipes megacpt serves: a stage schedule each (training.stages.PRESETS) and a row
# initialisation each (convert.methods.PRESETS).
Preset = Literal["swallow", "eeve", "redwhale"]


@dataclass
class RopeScalingConfig:
    """Llama-3.x RoPE frequency scaling (``rope_scaling`` with ``rope_type: llama3`` in HF)."""

    factor: float = 8.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int = 8192

    def __post_init__(self) -> None:
        above(self, 0, "factor", "low_freq_factor", "high_freq_factor")
        at_least(self, 1, "original_max_position_embeddings")


@dataclass
class ModelConfig:
    """A Llama-family decoder: RMSNorm, SwiGLU, RoPE, GQA; Qwen2's qkv bias; tied or untied. Phi:
    LayerNorm, GELU (tanh), biases everywhere, partial RoPE, the parallel attention/MLP block and
    an LM-head bias."""

    num_layers: int = 2
    hidden_size: int = 64
    num_attention_heads: int = 4
    num_query_groups: int | None = None  # None: multi-head attention (as many groups as heads)
    ffn_hidden_size: int | None = None  # None: 4 x hidden_size
    kv_channels: int | None = None  # None: hidden_size // num_attention_heads
    vocab_size: int = 32000  # the true vocabulary size; padding is always derived from it
    make_vocab_size_divisible_by: int = 128
    max_position_embeddings: int = 4096
    normalization: Literal["RMSNorm", "LayerNorm"] = "RMSNorm"
    norm_epsilon: float = 1e-5
    activation: Literal["swiglu", "gelu", "gelu_tanh"] = "swiglu"  # gelu_tanh: Phi's gelu_new
    add_bias_linear: bool = False
    add_qkv_bias: bool = False  # Qwen2
    rotary_base: float = 10000.0
    rotary_percent: float = 1.0  # the share of each head's channels that RoPE rotates (Phi-2: 0.4)
    parallel_attention_mlp: bool = False  # Phi: x + attention(norm(x)) + mlp(norm(x)), one norm
    output_layer_bias: bool = False  # Phi: the LM head has a bias
    rope_scaling: RopeScalingConfig | None = None
    tie_embeddings: bool = False
    init_method_std: float = 0.02
    hidden_dropout: float = 0.0
    attention_dropout: float = 0.0
    transformer_impl: Literal["auto", "local", "transformer_engine"] = "auto"

    def __post_init__(self) -> None:
        at_least(self, 1, "num_layers", "hidden_size", "num_attention_heads", "num_query_groups")
        at_least(self, 1, "ffn_hidden_size", "kv_channels", "vocab_size", "make_vocab_size_divisible_by")
        at_least(self, 1, "max_position_embeddings")
        above(self, 0, "norm_epsilon", "rotary_base")
        at_least(self, 0, "init_method_std", "hidden_dropout", "attention_dropout")
        below(self, 1, "hidden_dropout", "attention_dropout")
        rotated = int(self.head_dim * self.rotary_percent)
        if not 0 < self.rotary_percent <= 1 or (self.rotary_percent < 1 and (rotated < 2 or rotated % 2)):
            raise UserError(
                f"rotary_percent {self.rotary_percent} of {self.head_dim} head channels rotates {rotated}: "
                "it must rotate an even number of channels, at least 2"
            )

    @property
    def groups(self) -> int:
        """Query groups, resolved (``num_query_groups`` or one per head)."""
        return self.num_query_groups or self.num_attention_heads

    @property
    def ffn(self) -> int:
        """FFN hidden size, resolved (``ffn_hidden_size`` or 4 x hidden)."""
        return self.ffn_hidden_size or 4 * self.hidden_size

    @property
    def head_dim(self) -> int:
        """Channels per head, resolved (``kv_channels`` or hidden // heads)."""
        return self.kv_channels or self.hidden_size // self.num_attention_heads

    def resolved(self) -> ModelConfig:
        """A copy with every derived field (query groups, FFN size, head channels) set to its value."""
        return dataclasses.replace(
            self, num_query_groups=self.groups, ffn_hidden_size=self.ffn, kv_channels=self.head_dim
        )


@dataclass
class ParallelConfig:
    """How the model and the batch are split across processes."""

    tensor_model_parallel_size: int = 1
    pipeline_model_parallel_size: int = 1
    virtual_pipeline_model_parallel_size: int | None = None
    context_parallel_size: int = 1
    sequence_parallel: bool = False
    use_distributed_optimizer: bool = False
    overlap_grad_reduce: bool = False
    overlap_param_gather: bool = False
    bucket_size: int | None = None
    recompute_granularity: Literal["full", "selective"] | None = None
    recompute_method: Literal["uniform", "block"] | None = None
    recompute_num_layers: int | None = None
    distributed_timeout_minutes: int = 30

    def __post_init__(self) -> None:
        at_least(
            self, 1, "tensor_model_parallel_size", "pipeline_model_parallel_size", "context_parallel_size"
        )
        at_least(self, 1, "virtual_pipeline_model_parallel_size", "bucket_size", "recompute_num_layers")
        at_least(self, 1, "distributed_timeout_minutes")


@dataclass
class PrecisionConfig:
    """Parameter/compute dtype and Transformer Engine FP8."""

    dtype: Literal["fp32", "bf16", "fp16"] = "fp32"
    fp8: Literal["e4m3", "hybrid"] | None = None
    fp8_recipe: Literal["delayed", "tensorwise", "mxfp8", "blockwise"] = "delayed"
    fp8_margin: int = 0
    fp8_amax_history_len: int = 1024
    fp8_amax_compute_algo: Literal["max", "most_recent"] = "max"
    fp8_param: bool = False

    def __post_init__(self) -> None:
        at_least(self, 0, "fp8_margin")
        at_least(self, 1, "fp8_amax_history_len")


@dataclass
class OptimizerConfig:
    """AdamW and its learning-rate schedule.

    ``embedding_lr``/``embedding_min_lr`` give the embedding and output layer their own peak and
    final LR on the same schedule (Megatron's decoupled LR): new vocabulary rows need large steps
    that would make the pretrained body forget. Unset, they follow ``lr``/``min_lr``.
    """

    lr: float = 3e-4
    min_lr: float = 3e-5
    embedding_lr: float | None = None
    embedding_min_lr: float | None = None
    weight_decay: float = 0.1
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    adam_eps: float = 1e-8
    clip_grad: float = 1.0
    warmup_steps: int = 0
    decay_style: Literal["cosine", "linear", "constant", "WSD"] = "cosine"
    decay_steps: int | None = None  # None: the whole run (training.train_steps)
    wsd_decay_steps: int | None = None  # WSD: length of the final decay phase
    wsd_decay_style: Literal["linear", "cosine", "exponential", "minus_sqrt"] = "linear"

    def __post_init__(self) -> None:
        above(self, 0, "lr", "embedding_lr", "adam_eps")
        at_least(self, 0, "min_lr", "embedding_min_lr", "weight_decay", "clip_grad", "warmup_steps")
        at_least(self, 0, "adam_beta1", "adam_beta2", "wsd_decay_steps")
        below(self, 1, "adam_beta1", "adam_beta2")
        at_least(self, 1, "decay_steps")
        not_above(self, "min_lr", "lr")
        not_above(self, "embedding_min_lr", "embedding_lr" if self.embedding_lr is not None else "lr")


@dataclass
class DatasetEntry:
    """One ``.bin``/``.idx`` dataset of a mixture, in a run config or a mixture file alike.

    ``prefix`` is the pair's path without the suffix; ``weight`` is a sampling share, not a size;
    ``lang`` tags the language validation reports it under; ``name`` (default: the prefix's file
    name) names it in tables and must be unique within a mixture.
    """

    prefix: str = ""
    weight: float = 1.0
    lang: str = "und"
    name: str = ""

    def __post_init__(self) -> None:
        if not self.prefix.strip():
            raise UserError("prefix: the path of a .bin/.idx pair (without the suffix) is required")
        if not (math.isfinite(self.weight) and self.weight > 0):
            raise UserError(
                f"weight must be a positive finite number (a sampling share), got {self.weight!r}"
            )
        if not self.lang.strip():
            raise UserError("lang must be a non-empty language tag, got ''")

    @property
    def bin_path(self) -> str:
        return self.prefix + ".bin"

    @property
    def idx_path(self) -> str:
        return self.prefix + ".idx"


@dataclass
class DataConfig:
    """What the model reads: a weighted mixture of Megatron indexed datasets."""

    datasets: list[DatasetEntry] = field(default_factory=list)
    mixture_file: str | None = None  # a YAML data-mixture spec, instead of ``datasets``
    valid_datasets: list[DatasetEntry] = field(default_factory=list)  # empty: the split's valid part
    seq_length: int = 128
    split: str = "98,2,0"
    eod_id: int = 2
    pad_id: int = 0
    cache_dir: str | None = None  # None: <run_dir>/data_cache

    def __post_init__(self) -> None:
        at_least(self, 1, "seq_length")
        at_least(self, 0, "eod_id", "pad_id")
        exclusive(self, "datasets", "mixture_file")


@dataclass
class TrainingConfig:
    """Steps, batches and seed."""

    train_steps: int = 10
    micro_batch_size: int = 2
    global_batch_size: int = 8
    seed: int = 1234
    log_interval: int = 1
    eval_interval: int | None = None  # None: no validation during training
    eval_at_start: bool = False  # also validate once before the first step of a fresh run
    eval_at_stage_end: bool = False  # also validate when each stage but the last ends
    eval_steps: int = 2
    exit_on_nonfinite_steps: int = 3  # this many non-finite losses in a row stop the run

    def __post_init__(self) -> None:
        at_least(self, 0, "train_steps")
        at_least(self, 1, "micro_batch_size", "global_batch_size", "log_interval", "eval_interval")
        at_least(self, 1, "eval_steps", "exit_on_nonfinite_steps")


@dataclass
class CheckpointConfig:
    """Where checkpoints go, and the two ways a run can start from one.

    ``pretrained`` initialises the model weights only (a new run: step 0, fresh optimizer);
    ``resume`` continues this run from its latest checkpoint in ``save_dir`` (model, optimizer,
    scheduler, step, data position and RNG). Any of ``preempt_signals`` (Slurm's warning signal,
    SIGTERM) makes the run save at the next step boundary and exit with status 75, for requeue.
    """

    save_dir: str | None = None  # None: <run_dir>/checkpoints
    save_interval: int | None = None  # None: only at the end
    save_at_end: bool = True
    pretrained: str | None = None
    resume: bool = True
    keep_last: int | None = None  # None: keep every checkpoint
    preempt_signals: list[str] = field(default_factory=lambda: ["SIGUSR1", "SIGTERM"])

    def __post_init__(self) -> None:
        at_least(self, 1, "save_interval", "keep_last")


@dataclass
class LoggingConfig:
    """Where a run writes its resolved config, metrics, TensorBoard events and ``loss.png``.

    MFU is logged against ``peak_tflops`` (dense peak of one device at the run's precision); left
    unset, H100 and H200 GPUs are recognised by name, and elsewhere only TFLOP/s are logged.
    """

    run_dir: str = "runs/default"
    tensorboard: bool = True
    peak_tflops: float | None = None

    def __post_init__(self) -> None:
        above(self, 0, "peak_tflops")


LoraTarget = Literal["linear_qkv", "linear_proj", "linear_fc1", "linear_fc2"]


@dataclass
class LoraConfig:
    """Low-rank adapters that a stage trains in place of the chosen linear layers' weights.

    Every transformer layer gets an adapter on each of ``targets``; its update is
    ``alpha / rank * B @ A`` (``megacpt.model.lora``), folded into the weights at the stage's end.
    """

    rank: int = 16
    alpha: float = 32.0
    dropout: float = 0.0
    targets: list[LoraTarget] = field(
        default_factory=lambda: ["linear_qkv", "linear_proj", "linear_fc1", "linear_fc2"]
    )

    def __post_init__(self) -> None:
        at_least(self, 1, "rank")
        above(self, 0, "alpha")
        at_least(self, 0, "dropout")
        below(self, 1, "dropout")
        if not self.targets:
            raise UserError("lora.targets is empty: name the linear layers that get adapters")
        if len(set(self.targets)) != len(self.targets):
            raise UserError(f"lora.targets names a layer twice: {self.targets}")


@dataclass
class TrainableConfig:
    """What a stage trains; everything else stays bit-identical through the stage.

    Rows are vocabulary rows: ``new`` are the ids at and above ``schedule.old_vocab_size`` (added
    by vocabulary expansion), ``old`` the ids below it. ``layers`` counts transformer layers from 0
    (``even``: 0, 2, 4, ...; ``odd``: 1, 3, 5, ...); a trained layer trains its norms too, and
    ``norms: true`` also trains the norms of frozen layers and the final norm. With tied
    embeddings the input and output selections apply to the one shared matrix (their union).
    ``lora`` adds low-rank adapters to every layer's chosen linear layers and trains them.
    """

    input_embeddings: Literal["none", "new", "old", "all"] = "all"
    output_layer: Literal["none", "new", "all"] = "all"
    layers: Literal["none", "all", "odd", "even"] | list[int] = "all"
    norms: bool = False
    lora: LoraConfig | None = None

    def __post_init__(self) -> None:
        if self.lora is not None and self.layers not in ("none", []):
            raise UserError(
                f"train.lora trains the transformer layers through adapters, but train.layers is "
                f"{self.layers!r}: set train.layers: none (train.norms: true also trains the norms)"
            )


@dataclass
class StageConfig:
    """One stage of a continual-pretraining schedule.

    Its budget is ``steps``, or ``tokens`` (rounded up to whole global batches), or ``share`` of
    ``training.train_steps``. Its ``optimizer`` section gives only what differs from the run's: the
    loader fills the rest from the run's ``optimizer`` (None: the run's as it is). Unset data falls
    back to ``data``. ``reset_optimizer: false`` carries Adam's state over from the previous stage,
    which must then train the same parameters. Every stage ends with a checkpoint.
    """

    name: str = ""
    steps: int | None = None
    tokens: int | None = None
    share: float | None = None
    train: TrainableConfig = field(default_factory=TrainableConfig)
    optimizer: OptimizerConfig | None = None
    datasets: list[DatasetEntry] | None = None
    mixture_file: str | None = None
    reset_optimizer: bool = True

    def __post_init__(self) -> None:
        at_least(self, 0, "steps", "tokens")  # an empty stage is refused where it matters (stages.py)
        above(self, 0, "share")
        if self.share is not None and self.share > 1:
            raise UserError(f"share is a fraction of training.train_steps, at most 1, got {self.share}")
        exclusive(self, "datasets", "mixture_file")


@dataclass
class ScheduleConfig:
    """The stages of a run: a named preset, or a list. Neither: one stage training everything.

    With a preset, ``stages`` entries adjust the preset's stage of the same name: its budget, LR
    schedule or data (not what it trains).
    """

    preset: Preset | None = None
    stages: list[StageConfig] = field(default_factory=list)
    old_vocab_size: int | None = None  # the base vocabulary size before expansion

    def __post_init__(self) -> None:
        at_least(self, 1, "old_vocab_size")


@dataclass
class Config:
    """A whole run."""

    model: ModelConfig = field(default_factory=ModelConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    precision: PrecisionConfig = field(default_factory=PrecisionConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
