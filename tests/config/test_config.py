"""Tier 1: strict config loading, overrides, validation and the mapping onto Megatron-core configs."""

from __future__ import annotations

import re

import pytest
import torch
import yaml

from megacpt.config import load_config
from megacpt.config.loader import dump_config, parse_override
from megacpt.config.megatron import ddp_config, optimizer_config, padded_vocab_size, transformer_config
from megacpt.config.schema import Config
from megacpt.config.validate import validate_data, validate_layout
from megacpt.errors import UserError


def _write(tmp_path, tree: dict):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def test_yaml_and_overrides_are_typed(tmp_path):
    path = _write(
        tmp_path, {"model": {"hidden_size": 128, "rope_scaling": {"factor": 8}}, "optimizer": {"lr": 1}}
    )
    config = load_config(
        path,
        [
            "optimizer.lr=2e-4",
            "model.num_query_groups=2",
            "parallel.sequence_parallel=true",
            "data.datasets=[{prefix: a, weight: 2, lang: ko}]",
        ],
    )
    assert config.model.hidden_size == 128
    assert config.model.rope_scaling.factor == 8.0 and isinstance(config.model.rope_scaling.factor, float)
    assert config.optimizer.lr == 2e-4
    assert config.model.num_query_groups == 2 and config.parallel.sequence_parallel is True
    assert config.data.datasets[0].lang == "ko" and config.data.datasets[0].weight == 2.0


@pytest.mark.parametrize(
    "override,message",
    [
        ("model.hiden_size=3", "unknown config key 'model.hiden_size' (did you mean 'hidden_size'?)"),
        ("modle.hidden_size=3", "unknown config key 'modle'"),
        ("model.hidden_size=abc", "model.hidden_size: expected int, got str"),
        ("model.hidden_size=1.5", "model.hidden_size: expected int, got float"),
        ("parallel.sequence_parallel=1", "expected bool"),
        ("model.normalization=BatchNorm", "is not one of 'RMSNorm', 'LayerNorm'"),
        ("model.hidden_size", "is not of the form section.key=value"),
        ("model.hidden_size.x=1", "model.hidden_size: expected int, got dict"),
    ],
)
def test_bad_keys_and_types_are_one_line_errors(override, message):
    with pytest.raises(UserError) as err:
        load_config(None, [override])
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_or_malformed_file(tmp_path):
    with pytest.raises(UserError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [1, 2")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(bad)


def test_resolved_config_round_trips(tmp_path):
    config = load_config(None, ["model.num_layers=3", "model.rope_scaling={factor: 32.0}"])
    dump_config(config, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == config


def test_parse_override_values_are_yaml():
    assert parse_override("a.b=null") == ("a.b", None)
    assert parse_override("a.b=[1, 2]") == ("a.b", [1, 2])


@pytest.mark.parametrize(
    "vocab,divisible,tp,padded",
    [
        (32000, 128, 1, 32000),
        (32000, 128, 8, 32768),
        (43176, 128, 2, 43264),
        (250, 64, 4, 256),
        (1, 1, 1, 1),
    ],
)
def test_padded_vocab_is_recomputed_from_true_size_and_tp(vocab, divisible, tp, padded):
    assert padded_vocab_size(vocab, divisible, tp) == padded
    assert padded % (divisible * tp) == 0 and padded - vocab < divisible * tp


def test_transformer_config_mapping_llama_and_qwen2():
    config = load_config(
        None,
        [
            "model.num_layers=4",
            "model.hidden_size=64",
            "model.num_attention_heads=8",
            "model.num_query_groups=2",
            "model.ffn_hidden_size=160",
            "model.norm_epsilon=1e-6",
            "model.add_qkv_bias=true",
            "parallel.tensor_model_parallel_size=2",
            "parallel.pipeline_model_parallel_size=2",
            "parallel.sequence_parallel=true",
            "precision.dtype=bf16",
        ],
    )
    tf = transformer_config(config)
    assert (tf.tensor_model_parallel_size, tf.pipeline_model_parallel_size) == (2, 2)
    assert tf.num_query_groups == 2 and tf.ffn_hidden_size == 160 and tf.layernorm_epsilon == 1e-6
    assert tf.gated_linear_unit and tf.activation_func is torch.nn.functional.silu
    assert tf.add_qkv_bias and not tf.add_bias_linear and tf.normalization == "RMSNorm"
    assert tf.sequence_parallel and tf.bf16 and tf.params_dtype == torch.bfloat16
    assert tf.fp8 is None


def test_sequence_parallel_is_off_at_tp1_and_optimizer_is_adamw():
    config = load_config(
        None,
        [
            "parallel.sequence_parallel=true",
            "optimizer.weight_decay=0.05",
            "optimizer.adam_beta2=0.98",
            "optimizer.clip_grad=0.5",
            "parallel.use_distributed_optimizer=true",
            "parallel.overlap_grad_reduce=true",
        ],
    )
    assert transformer_config(config).sequence_parallel is False
    opt = optimizer_config(config)
    assert opt.optimizer == "adam" and opt.decoupled_weight_decay
    assert (opt.weight_decay, opt.adam_beta2, opt.clip_grad) == (0.05, 0.98, 0.5)
    ddp = ddp_config(config)
    assert ddp.use_distributed_optimizer and ddp.overlap_grad_reduce


@pytest.mark.parametrize(
    "overrides,world,message",
    [
        (["parallel.tensor_model_parallel_size=3"], 3, "does not divide num_attention_heads"),
        (
            [
                "model.num_attention_heads=8",
                "model.num_query_groups=2",
                "parallel.tensor_model_parallel_size=4",
            ],
            4,
            "does not divide num_query_groups",
        ),
        (["parallel.tensor_model_parallel_size=2"], 3, "world size 3 is not divisible by TP x PP x CP"),
        (
            ["training.global_batch_size=6", "training.micro_batch_size=2"],
            2,
            "global_batch_size 6 is not divisible",
        ),
        (["parallel.pipeline_model_parallel_size=3"], 3, "num_layers 2 is not divisible by PP x VP"),
        (["parallel.virtual_pipeline_model_parallel_size=2"], 1, "needs pipeline_model_parallel_size >= 3"),
        (
            [
                "parallel.virtual_pipeline_model_parallel_size=2",
                "parallel.pipeline_model_parallel_size=2",
                "model.num_layers=4",
            ],
            2,
            "needs pipeline_model_parallel_size >= 3",
        ),
        (["data.seq_length=8192"], 1, "exceeds max_position_embeddings"),
        (["parallel.overlap_param_gather=true"], 1, "needs use_distributed_optimizer"),
        (["precision.fp8=hybrid"], 1, "needs Transformer Engine"),
        (
            ["parallel.context_parallel_size=2", "data.seq_length=64"],
            2,
            "context_parallel_size > 1 needs Transformer Engine",
        ),
    ],
)
def test_impossible_layouts_are_clear_errors(overrides, world, message):
    with pytest.raises(UserError, match=message):
        validate_layout(load_config(None, overrides), world)


def test_missing_data_is_a_clear_error(tmp_path):
    config = Config()
    with pytest.raises(UserError, match="no training data"):
        validate_data(config)
    config = load_config(None, [f"data.datasets=[{{prefix: {tmp_path}/nope}}]"])
    with pytest.raises(UserError, match=r"missing data file .*nope\.bin"):
        validate_data(config)


# Every numeric field of every section, with a value out of its range: each is refused at load time
# with one line naming the field (``__post_init__`` of its section).
_BAD_VALUES = {
    "model.rope_scaling": "{factor: 0}",
    **{
        f"model.{k}": "0"
        for k in (
            "num_layers",
            "hidden_size",
            "num_attention_heads",
            "num_query_groups",
            "ffn_hidden_size",
            "kv_channels",
            "vocab_size",
            "make_vocab_size_divisible_by",
            "max_position_embeddings",
            "norm_epsilon",
            "rotary_base",
        )
    },
    "model.init_method_std": "-1",
    "model.hidden_dropout": "1.0",
    "model.attention_dropout": "-0.1",
    **{
        f"parallel.{k}": "0"
        for k in (
            "tensor_model_parallel_size",
            "pipeline_model_parallel_size",
            "virtual_pipeline_model_parallel_size",
            "context_parallel_size",
            "bucket_size",
            "recompute_num_layers",
            "distributed_timeout_minutes",
        )
    },
    "precision.fp8_margin": "-1",
    "precision.fp8_amax_history_len": "0",
    "optimizer.lr": "0",
    "optimizer.min_lr": "-1e-5",
    "optimizer.embedding_lr": "0",
    "optimizer.embedding_min_lr": "1.0",
    "optimizer.weight_decay": "-0.1",
    "optimizer.adam_beta1": "1.0",
    "optimizer.adam_beta2": "-0.5",
    "optimizer.adam_eps": "0",
    "optimizer.clip_grad": "-1",
    "optimizer.warmup_steps": "-1",
    "optimizer.decay_steps": "0",
    "optimizer.wsd_decay_steps": "-1",
    "data.datasets": "[{prefix: a, weight: -1}]",
    "data.seq_length": "0",
    "data.eod_id": "-1",
    "data.pad_id": "-1",
    "training.train_steps": "-1",
    **{
        f"training.{k}": "0"
        for k in (
            "micro_batch_size",
            "global_batch_size",
            "log_interval",
            "eval_interval",
            "eval_steps",
            "exit_on_nonfinite_steps",
        )
    },
    "checkpoint.save_interval": "0",
    "checkpoint.keep_last": "0",
    "logging.peak_tflops": "0",
    "schedule.old_vocab_size": "0",
    "schedule.stages": "[{name: a, share: 1.5}]",
}


@pytest.mark.parametrize("override", [f"{k}={v}" for k, v in _BAD_VALUES.items()])
def test_every_field_out_of_range_is_refused_at_load(override):
    section, field = override.split("=")[0].split(".")
    with pytest.raises(
        UserError, match=rf"^{section}\.{field}(\[0\])?(\.\w+)? (\(\S+\) )?(must|is a fraction)"
    ) as err:
        load_config(None, [override])
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["optimizer.min_lr=1.0"], r"optimizer\.min_lr \(1\.0\) must not be above lr"),
        (
            ["optimizer.lr=1e-4", "optimizer.embedding_lr=1e-3", "optimizer.embedding_min_lr=2e-3"],
            r"embedding_min_lr \(0\.002\) must not be above embedding_lr",
        ),
        (
            ["schedule.stages=[{name: a, optimizer: {lr: 1e-3, min_lr: 1e-2}}]"],
            r"stages\[0\]\.optimizer\.min_lr .* must not be above lr",
        ),
    ],
)
def test_cross_field_learning_rates(overrides, message):
    with pytest.raises(UserError, match=message):
        load_config(None, overrides)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["data.datasets=[{prefix: a}]", "data.mixture_file=m.yaml"], "data.datasets excludes mixture_file"),
        (
            ["schedule.stages=[{name: s, steps: 1, datasets: [{prefix: a}], mixture_file: m.yaml}]"],
            "schedule.stages[0].datasets excludes mixture_file",
        ),
    ],
)
def test_settings_that_exclude_each_other_are_refused(overrides, message):
    with pytest.raises(UserError, match=rf"^{re.escape(message)}, which is also set: set only one$"):
        load_config(None, overrides)
