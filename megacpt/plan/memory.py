"""Per-GPU memory estimate of a training layout: weights, gradients, optimizer state, activations.

The model-state terms follow the accounting of Megatron-LM's ``theoretical_memory_usage``
(weights in the run's dtype, FP32 gradient buffers, FP32 main params + two Adam moments, the
latter sharded over DP x CP by the distributed optimizer). Activations follow Korthikanti et al.
2022 ("Reducing Activation Recomputation in Large Transformer Models", Table 2), rewritten for
what a Llama block keeps: grouped-query attention, RoPE outputs, SwiGLU's double-width FC1, and
the cluster's fused kernels (flash attention: no ``s^2`` term; fused RMSNorm and SwiGLU). The
unfused path of Megatron's local spec (the CPU path) is priced too, from what autograd saves
there: the softmax output, the normalised input inside a composite RMSNorm, SwiGLU's two halves.

Unlike the reference (which prices only the first pipeline stage), both the first stage
(embedding, ``min(PP, microbatches)`` in flight, more with interleaving) and the last stage (one
microbatch in flight, but the logits and the cross entropy) are priced, and the larger one is the
GPU's peak. Framework overhead (CUDA context, NCCL buffers, allocator fragmentation) is not
included: ``megacpt plan --reserve-gib`` keeps headroom for it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from megacpt.config.megatron import padded_vocab_size
from megacpt.config.schema import Config
from megacpt.config.validate import data_parallel_size

DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
GRAD_BYTES = 4  # megacpt's DDP config reduces gradients in FP32 (grad_reduce_in_fp32)


@dataclass(frozen=True)
class MemoryEstimate:
    """Estimated peak bytes on the busiest GPU of a layout, by kind."""

    stage: str  # "first" or "last": the pipeline stage that peaks
    params: int  # parameters held by that GPU
    weights: int
    gradients: int
    optimizer: int  # as configured (sharded when the distributed optimizer is on)
    optimizer_unsharded: int  # the same state without the distributed optimizer
    activations: int
    step_workspace: int = 0  # temporaries of the optimizer step, when activations are freed

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer + max(self.activations, self.step_workspace)


def _layer_params(config: Config, tp: int) -> int:
    """Parameters of one transformer layer on one tensor-parallel rank."""
    m = config.model
    kv = m.head_dim
    groups = m.groups
    h, ffn = m.hidden_size, m.ffn
    qkv_out = kv * (m.num_attention_heads + 2 * groups)
    fc1_out = 2 * ffn if m.activation == "swiglu" else ffn
    norm = 2 * h if m.normalization == "LayerNorm" else h  # replicated on every TP rank
    sharded = qkv_out * h + kv * m.num_attention_heads * h + fc1_out * h + ffn * h
    if m.add_qkv_bias or m.add_bias_linear:
        sharded += qkv_out
    replicated = norm if m.parallel_attention_mlp else 2 * norm  # Phi's block: one norm
    if m.add_bias_linear:
        sharded += fc1_out
        replicated += 2 * h  # row-parallel biases are whole on every rank
    return sharded // tp + replicated


def params_on_rank(config: Config, pp_rank: int) -> int:
    """Parameters a GPU at pipeline rank ``pp_rank`` holds (all its virtual stages), exactly.

    Checked against a model built on the meta device by ``megacpt.plan.meta_build``.
    """
    m, p = config.model, config.parallel
    tp, pp = p.tensor_model_parallel_size, p.pipeline_model_parallel_size
    vocab = padded_vocab_size(m.vocab_size, m.make_vocab_size_divisible_by, tp)
    total = m.num_layers // pp * _layer_params(config, tp)
    embedding = vocab * m.hidden_size // tp
    if pp_rank == 0:
        total += embedding
    if pp_rank == pp - 1:
        total += m.hidden_size * (2 if m.normalization == "LayerNorm" else 1)  # final norm
        if not m.tie_embeddings or pp > 1:  # a tied head on another stage keeps its own copy
            total += embedding
        if m.output_layer_bias:
            total += vocab // tp
    return total


def _materialises_scores(config: Config, fused: bool) -> bool:
    """Whether core attention keeps ``[b, heads, s, s]`` tensors. TE's fused attention and the local
    spec's SDPA (``megacpt.model.attention``) do not; SDPA with attention dropout on a CPU falls
    back to PyTorch's math kernel, which does."""
    return not fused and config.model.attention_dropout > 0


def _layer_activation_bytes(config: Config, seq: int, micro_batch: int, fused: bool) -> float:
    """Bytes one layer keeps for backward for one microbatch (``seq`` already split by CP)."""
    m, p = config.model, config.parallel
    tp = p.tensor_model_parallel_size
    sp_div = tp if p.sequence_parallel and tp > 1 else 1
    kv = m.head_dim
    heads, groups = m.num_attention_heads, m.groups
    h, ffn = m.hidden_size, m.ffn
    dtype = DTYPE_BYTES[config.precision.dtype]
    sb = seq * micro_batch
    # Two norm inputs and the two norm outputs feeding QKV and FC1 (one of each in Phi's parallel
    # block, whose attention and MLP read one norm's output): split only by sequence parallel.
    norms = 1 if m.parallel_attention_mlp else 2
    elements = 2 * norms * sb * h / sp_div
    # QKV output (kept alive by V), rotated Q and K, the attention context feeding the projection.
    q, k = heads * kv, groups * kv
    elements += sb * ((q + 2 * k) + (q + k) + q) / tp
    # FC1 output (two halves under SwiGLU) and the activation output feeding FC2.
    elements += sb * ((3 if m.activation == "swiglu" else 2) * ffn) / tp
    if not fused:
        # A composite RMSNorm also keeps x / rms(x); an unfused SwiGLU keeps both halves of FC1
        # besides its output and FC1's output.
        elements += norms * sb * h / sp_div + sb * 2 * ffn / tp
    total = elements * dtype
    if p.recompute_granularity != "selective" and _materialises_scores(config, fused):
        # Attention that materialises the scores keeps the softmax output per head (Korthikanti's
        # 5as^2b, less dropout).
        total += heads / tp * seq * seq * micro_batch * dtype
        if m.attention_dropout > 0:
            total += heads / tp * seq * seq * micro_batch * (1 + dtype)
    if m.hidden_dropout > 0:
        total += 2 * sb * h / sp_div  # two one-byte dropout masks
    return total


def _stage_activation_bytes(config: Config, world_size: int, first: bool, fused: bool) -> float:
    """Activation bytes of the first or last pipeline stage at its peak."""
    m, p, t = config.model, config.parallel, config.training
    tp, pp, vp, cp = (
        p.tensor_model_parallel_size,
        p.pipeline_model_parallel_size,
        p.virtual_pipeline_model_parallel_size,
        p.context_parallel_size,
    )
    dp = data_parallel_size(config, world_size)
    microbatches = t.global_batch_size // (t.micro_batch_size * dp)
    seq = config.data.seq_length // cp
    b = t.micro_batch_size
    dtype = DTYPE_BYTES[config.precision.dtype]
    layers = m.num_layers // pp
    full_layer = _layer_activation_bytes(config, seq, b, fused)
    sp_div = tp if p.sequence_parallel and tp > 1 else 1
    layer_input = seq * b * m.hidden_size * dtype / sp_div
    if p.recompute_granularity == "full":
        chunk = p.recompute_num_layers or 1
        if p.recompute_method == "block":
            recomputed = min(chunk, layers)
            per_microbatch = recomputed * layer_input + (layers - recomputed) * full_layer
        else:  # uniform: the input of every chunk of layers is kept
            per_microbatch = math.ceil(layers / chunk) * layer_input
        transient = chunk * full_layer  # one chunk is rebuilt in full during backward
    else:
        per_microbatch = layers * full_layer
        transient = 0.0
    if _materialises_scores(config, fused):
        # Backward through such attention holds the gradients of the scores and probabilities
        # (and, under selective recompute, the recomputed probabilities).
        score_tensors = 3 if p.recompute_granularity == "selective" else 2
        transient += score_tensors * m.num_attention_heads / tp * seq * seq * b * dtype
    # Microbatches in flight, in units of the stage's whole share of layers. Interleaved: the
    # warm-up of Megatron's schedule, 2 (PP - rank - 1) + (VP - 1) PP + 1 chunks of 1/VP each (on
    # the first stage this is Megatron-LM's penalty of 1 + (PP - 1) / (PP x VP) times PP).
    rank = 0 if first else pp - 1
    if vp:
        in_flight = min(microbatches * vp, 2 * (pp - rank - 1) + (vp - 1) * pp + 1) / vp
    else:
        in_flight = min(pp - rank, microbatches)
    if first:
        # Embedding output, kept once per microbatch in flight.
        extra = in_flight * seq * b * m.hidden_size * dtype / sp_div
    else:
        vocab = padded_vocab_size(m.vocab_size, m.make_vocab_size_divisible_by, tp)
        # Logits in the run's dtype plus the FP32 softmax and its gradient of the vocab-parallel loss.
        extra = seq * b * vocab / tp * (dtype + 8)
    if pp == 1:  # one stage holds both ends
        vocab = padded_vocab_size(m.vocab_size, m.make_vocab_size_divisible_by, tp)
        extra = seq * b * (m.hidden_size * dtype / sp_div + vocab / tp * (dtype + 8))
    return in_flight * per_microbatch + transient + extra


def estimate_memory(config: Config, world_size: int, fused: bool = True) -> MemoryEstimate:
    """The per-GPU peak of ``config`` on ``world_size`` GPUs (the layout must already be valid).

    ``fused``: the cluster's Transformer Engine kernels (flash attention, fused norms and SwiGLU);
    ``False`` prices the unfused local spec and torch's Adam, which run on a CPU.
    """
    p, prec = config.parallel, config.precision
    pp = p.pipeline_model_parallel_size
    dtype = DTYPE_BYTES[prec.dtype]
    optimizer_per_param = 8 if prec.dtype == "fp32" else 12  # Adam moments (+ FP32 main params)
    shards = data_parallel_size(config, world_size) * p.context_parallel_size
    best: MemoryEstimate | None = None
    for stage, pp_rank in (("first", 0), ("last", pp - 1)):
        params = params_on_rank(config, pp_rank)
        weights = params * dtype
        if prec.fp8:
            weights += params  # Transformer Engine's FP8 copy of the weights, kept between passes
        unsharded = params * optimizer_per_param
        estimate = MemoryEstimate(
            stage=stage,
            params=params,
            weights=weights,
            gradients=params * GRAD_BYTES,
            optimizer=math.ceil(unsharded / shards) if p.use_distributed_optimizer else unsharded,
            optimizer_unsharded=unsharded,
            activations=int(_stage_activation_bytes(config, world_size, stage == "first", fused)),
            # torch's foreach Adam (used without TE/apex) builds sqrt(v) for all its params at once.
            step_workspace=0 if fused else 4 * params // (shards if p.use_distributed_optimizer else 1),
        )
        if best is None or estimate.total > best.total:
            best = estimate
    assert best is not None
    return best
