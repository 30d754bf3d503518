"""Build this rank's Megatron-core ``GPTModel`` chunks from a megacpt config.

The Transformer Engine layer spec is used when TE imports (FP8 settings travel in the
``TransformerConfig``); otherwise the local spec, with ``SequenceParallelTorchNorm`` for every
norm so that sequence parallelism works without apex or TE, and PyTorch's fused SDPA as core
attention (``megacpt.model.attention``). Asking for TE or FP8 without TE is a
``UserError``. With virtual pipeline stages a rank holds several chunks, one per stage. Phi's
parallel attention/MLP block is a layer of either spec (``megacpt.model.parallel_block``;
``te_parallel_block_spec``), and its LM-head bias a parameter added to Megatron's output layer
(``add_output_bias``).
"""

from __future__ import annotations

import dataclasses

import torch
from megatron.core import parallel_state, tensor_parallel
from megatron.core.models.gpt import GPTModel
from megatron.core.models.gpt.gpt_layer_specs import (
    get_gpt_layer_local_spec,
    get_gpt_layer_with_transformer_engine_spec,
)
from megatron.core.transformer import TransformerConfig
from megatron.core.transformer.spec_utils import ModuleSpec
from megatron.core.transformer.transformer_block import TransformerBlockSubmodules, get_num_layers_to_build

from megacpt.compat import model as model_compat
from megacpt.config.megatron import padded_vocab_size
from megacpt.config.schema import Config
from megacpt.config.validate import transformer_engine_available
from megacpt.errors import UserError
from megacpt.model.attention import SDPADotProductAttention
from megacpt.model.norms import SequenceParallelTorchNorm
from megacpt.model.parallel_block import ParallelAttentionMLPLayer, SharedInputNorm


def use_transformer_engine(config: Config) -> bool:
    """Whether this run uses the TE layer spec (``auto``: when TE imports)."""
    impl = config.model.transformer_impl
    have_te = transformer_engine_available()
    if impl == "transformer_engine" and not have_te:
        raise UserError(
            "model.transformer_impl is 'transformer_engine' but Transformer Engine is not installed"
        )
    if config.precision.fp8 and not have_te:
        raise UserError(
            "precision.fp8 needs Transformer Engine, which is not installed (pip install megacpt[gpu])"
        )
    return have_te and impl != "local"


def _local_block_spec(
    config: Config, tf_config: TransformerConfig, vp_stage: int | None
) -> TransformerBlockSubmodules:
    layer = get_gpt_layer_local_spec(normalization=config.model.normalization)
    attention = layer.submodules.self_attention
    attention = dataclasses.replace(
        attention,
        submodules=dataclasses.replace(attention.submodules, core_attention=SDPADotProductAttention),
    )
    parallel_block = config.model.parallel_attention_mlp
    layer = dataclasses.replace(
        layer,
        module=ParallelAttentionMLPLayer if parallel_block else layer.module,
        submodules=dataclasses.replace(
            layer.submodules,
            self_attention=attention,
            input_layernorm=SequenceParallelTorchNorm,
            pre_mlp_layernorm=SharedInputNorm if parallel_block else SequenceParallelTorchNorm,
        ),
    )
    num_layers = get_num_layers_to_build(tf_config, vp_stage=vp_stage)
    return TransformerBlockSubmodules(layer_specs=[layer] * num_layers, layer_norm=SequenceParallelTorchNorm)


def te_parallel_block_spec(spec: ModuleSpec) -> ModuleSpec:
    """Phi's parallel block on Transformer Engine: Megatron's TE layer spec with the norm taken out
    of ``linear_qkv`` (a ``TENorm`` of its own, whose output ``linear_fc1`` also reads through
    ``SharedInputNorm``), so that one norm weight serves both; its checkpoint key stays the fused
    spec's ``self_attention.linear_qkv.layer_norm_*``, as in the local spec."""
    from megatron.core.extensions.transformer_engine_spec_provider import TESpecProvider

    te = TESpecProvider()
    sub = spec.submodules
    attention, mlp = sub.self_attention, sub.mlp
    return dataclasses.replace(
        spec,
        module=ParallelAttentionMLPLayer,
        submodules=dataclasses.replace(
            sub,
            input_layernorm=te.layer_norm(),
            self_attention=dataclasses.replace(
                attention,
                submodules=dataclasses.replace(attention.submodules, linear_qkv=te.column_parallel_linear()),
            ),
            pre_mlp_layernorm=SharedInputNorm,
            mlp=dataclasses.replace(
                mlp, submodules=dataclasses.replace(mlp.submodules, linear_fc1=te.column_parallel_linear())
            ),
            sharded_state_dict_keys_map={"input_layernorm.": "self_attention.linear_qkv.layer_norm_"},
        ),
    )


def layer_spec(
    config: Config, tf_config: TransformerConfig, vp_stage: int | None
) -> ModuleSpec | TransformerBlockSubmodules:
    """The transformer spec for one model chunk."""
    if use_transformer_engine(config):
        spec = get_gpt_layer_with_transformer_engine_spec()
        return te_parallel_block_spec(spec) if config.model.parallel_attention_mlp else spec
    return _local_block_spec(config, tf_config, vp_stage)


def _apply_llama3_rope_scaling(model: GPTModel, config: Config) -> None:
    """Scale RoPE frequencies as Llama 3.x does, with the config's factors.

    ``GPTModel(rope_scaling=True)`` hard-codes the low/high frequency factors and the original
    context length of Llama 3.1; a model with other values would silently get the wrong ones.
    """
    rope = config.model.rope_scaling
    assert rope is not None
    model_compat.scale_llama3_rope(
        model.rotary_pos_emb,
        factor=rope.factor,
        low_freq_factor=rope.low_freq_factor,
        high_freq_factor=rope.high_freq_factor,
        original_max_position_embeddings=rope.original_max_position_embeddings,
    )


def mask_vocab_padding(model: GPTModel, vocab_size: int) -> None:
    """Make the logits of the vocabulary's padding ids -inf, on this TP rank's slice of the output layer.

    The vocabulary is padded to a multiple of ``make_vocab_size_divisible_by x TP``; Megatron's
    softmax would include the padding logits, so its loss would depend on the padding (and so on
    TP) and differ from the Hugging Face model's. Masked, the padding never takes probability mass.
    """
    per_rank = model.output_layer.weight.shape[0] if model.output_layer.weight is not None else None
    tp_rank = parallel_state.get_tensor_model_parallel_rank()
    if per_rank is None:  # tied embeddings on the first stage: the output weight is the embedding's
        per_rank = model.embedding.word_embeddings.weight.shape[0]
    first = tp_rank * per_rank
    if first + per_rank <= vocab_size:
        return
    padding = torch.arange(first, first + per_rank) >= vocab_size

    def mask(_module: torch.nn.Module, _inputs: object, output: tuple) -> tuple:
        logits_sbv, bias = output
        return logits_sbv.masked_fill(padding.to(logits_sbv.device), float("-inf")), bias

    model.output_layer.register_forward_hook(mask)


def add_output_bias(model: GPTModel) -> None:
    """Give the LM head a bias (Phi), vocabulary-parallel like its weight, initialised to zero.

    Megatron-core's ``GPTModel`` builds its output layer without one; its ``ColumnParallelLinear``
    adds a registered ``bias`` in its forward and shards it in checkpoints by output rows.
    """
    head = model.output_layer
    rows = head.output_size_per_partition
    bias = torch.nn.Parameter(torch.zeros(rows, dtype=model.config.params_dtype))
    tensor_parallel.set_tensor_model_parallel_attributes(bias, True, 0, 1)
    bias.allreduce = True  # type: ignore[attr-defined]
    bias.is_embedding_or_output_parameter = True  # type: ignore[attr-defined]  # embedding_lr applies
    head.bias = bias


def build_model(config: Config, tf_config: TransformerConfig) -> list[GPTModel]:
    """This rank's model chunks (one, or one per virtual pipeline stage), on the run's device."""
    m = config.model
    vp = config.parallel.virtual_pipeline_model_parallel_size
    vocab = padded_vocab_size(
        m.vocab_size, m.make_vocab_size_divisible_by, config.parallel.tensor_model_parallel_size
    )
    rope = m.rope_scaling
    chunks = []
    for stage in range(vp or 1):
        vp_stage = stage if vp else None
        kwargs = {"vp_stage": vp_stage} if vp else {}
        model = GPTModel(
            config=tf_config,
            transformer_layer_spec=layer_spec(config, tf_config, vp_stage),
            vocab_size=vocab,
            max_sequence_length=m.max_position_embeddings,
            pre_process=parallel_state.is_pipeline_first_stage(ignore_virtual=False, vp_stage=vp_stage),
            post_process=parallel_state.is_pipeline_last_stage(ignore_virtual=False, vp_stage=vp_stage),
            share_embeddings_and_output_weights=m.tie_embeddings,
            position_embedding_type="rope",
            rotary_percent=m.rotary_percent,
            rotary_base=int(m.rotary_base),
            **kwargs,
        )
        if rope is not None:
            _apply_llama3_rope_scaling(model, config)
        if model.post_process:
            if m.output_layer_bias:
                add_output_bias(model)
            mask_vocab_padding(model, m.vocab_size)
        if torch.cuda.is_available():
            model.cuda(torch.cuda.current_device())
        chunks.append(model)
    return chunks
