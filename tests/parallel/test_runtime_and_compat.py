"""Tier 1: the CPU compatibility layer, the runtime, and the model builder in one process."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

from megacpt.compat import cpu as cpu_compat
from megacpt.config import load_config
from megacpt.config.megatron import transformer_config
from megacpt.errors import UserError


def test_nothing_is_patched_when_a_gpu_is_present():
    code = (
        "import torch; cuda = torch.Tensor.cuda; torch.cuda.is_available = lambda: True\n"
        "from megacpt.compat import cpu as cpu_compat; import megatron.core.tensor_parallel.random as r\n"
        "print(cpu_compat.apply(), r.torch is torch, torch.Tensor.cuda is cuda)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["[]", "True", "True"]


@pytest.fixture(scope="module")
def runtime():
    from megacpt.parallel.runtime import init_runtime, shutdown

    config = load_config(
        None,
        [
            "model.num_layers=2",
            "model.hidden_size=32",
            "model.vocab_size=100",
            "model.make_vocab_size_divisible_by=4",
            "model.rope_scaling={factor: 8.0, original_max_position_embeddings: 64}",
            "data.seq_length=16",
            "model.max_position_embeddings=64",
        ],
    )
    rt = init_runtime(config)
    yield config, rt
    shutdown()


def test_patches_are_applied_and_scoped_to_megatron(runtime):
    import megatron.core.distributed.param_and_grad_buffer as buffers

    assert cpu_compat.applied() == list(cpu_compat.PATCHES)
    assert buffers.torch is not torch and buffers.torch.cuda.current_device() == torch.device("cpu")
    with pytest.raises((AssertionError, RuntimeError), match="CUDA"):
        torch.cuda.current_device()  # torch itself is untouched


def test_rng_tracker_forks_the_cpu_generator(runtime):
    from megatron.core.tensor_parallel import get_cuda_rng_tracker

    tracker = get_cuda_rng_tracker()
    outside = torch.get_rng_state()
    with tracker.fork():
        first = torch.rand(3)
    assert torch.equal(torch.get_rng_state(), outside)
    states = tracker.get_states()
    with tracker.fork():
        second = torch.rand(3)
    assert not torch.equal(first, second)  # the forked stream advanced
    tracker.set_states(states)
    with tracker.fork():
        assert torch.equal(torch.rand(3), second)


def test_gpt_model_forward_backward_with_scaled_rope(runtime):
    from megacpt.model.builder import build_model

    config, _ = runtime
    (model,) = build_model(config, transformer_config(config))
    # Llama 3 RoPE scaling with the config's factors (not Megatron's hard-coded 8192 context).
    dim = config.model.hidden_size // config.model.num_attention_heads
    base = 1.0 / (config.model.rotary_base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    wavelen = 2 * math.pi / base
    low_wavelen, high_wavelen = 64 / 1.0, 64 / 4.0
    smooth = (64 / wavelen - 1.0) / (4.0 - 1.0)
    expected = torch.where(wavelen > low_wavelen, base / 8.0, base)
    mid = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    expected = torch.where(mid, (1 - smooth) * base / 8.0 + smooth * base, expected)
    torch.testing.assert_close(model.rotary_pos_emb.inv_freq, expected)

    tokens = torch.randint(0, 100, (2, 16))
    logits = model(tokens, torch.arange(16).expand(2, -1), None)
    assert logits.shape == (2, 16, 100)
    logits.float().logsumexp(-1).mean().backward()
    assert all(p.grad is not None or p.main_grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize(
    "override,message",
    [
        ("model.transformer_impl=transformer_engine", "Transformer Engine is not installed"),
        ("precision.fp8=e4m3", "needs Transformer Engine"),
    ],
)
def test_transformer_engine_requests_without_te_are_errors(override, message):
    from megacpt.model.builder import use_transformer_engine

    with pytest.raises(UserError, match=message):
        use_transformer_engine(load_config(None, [override]))


@pytest.mark.parametrize(
    ("message", "line"),
    [
        (
            "[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:553] Connection closed by peer "
            "[10.206.123.12]:29925. This is typically caused by a remote worker crashing.",
            "[/__w/pytorch/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:553] Connection closed by peer "
            "[10.206.123.12]:29925. This is typically caused by a remote worker crashing.",
        ),
        (
            "\nNCCL communicator was aborted on rank 3.\nmore detail",
            "NCCL communicator was aborted on rank 3.",
        ),
        ("shape mismatch: [4] vs [8]", None),
    ],
)
def test_a_vanished_peer_is_told_from_other_errors(message: str, line: str | None) -> None:
    """What the trainer turns into one ``error:`` line (a rank or node died) and what it re-raises."""
    from megacpt.parallel.runtime import lost_peer

    assert lost_peer(RuntimeError(message)) == line
