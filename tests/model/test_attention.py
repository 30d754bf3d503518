"""SDPA core attention computes what Megatron-core's DotProductAttention computes, values and gradients."""

from __future__ import annotations

import pytest
import torch
from megatron.core import parallel_state, tensor_parallel
from megatron.core.transformer import TransformerConfig
from megatron.core.transformer.dot_product_attention import DotProductAttention
from megatron.core.transformer.enums import AttnMaskType

from megacpt.checkpoint.tensors import single_process_group
from megacpt.model.attention import SDPADotProductAttention


@pytest.fixture(scope="module")
def model_parallel():
    with single_process_group():
        parallel_state.initialize_model_parallel()
        tensor_parallel.model_parallel_cuda_manual_seed(0)
        yield
        parallel_state.destroy_model_parallel()


def _pair(groups: int, **config: object) -> tuple[DotProductAttention, DotProductAttention]:
    cfg = TransformerConfig(
        num_layers=2,
        hidden_size=48,
        num_attention_heads=6,
        num_query_groups=groups,
        **{"attention_dropout": 0.0, **config},
    )
    args = (cfg, 2, AttnMaskType.causal, "self")
    return DotProductAttention(*args), SDPADotProductAttention(*args)


def _qkv(groups: int, s: int = 7, b: int = 3) -> list[torch.Tensor]:
    torch.manual_seed(0)
    shapes = [(s, b, 6, 8), (s, b, groups, 8), (s, b, groups, 8)]
    return [torch.randn(shape, dtype=torch.float64, requires_grad=True) for shape in shapes]


def _run(module: DotProductAttention, qkv: list[torch.Tensor], mask: torch.Tensor | None):
    out = module(*qkv, mask)
    (out * torch.arange(out.numel(), dtype=out.dtype).view_as(out).sin()).sum().backward()
    grads = [t.grad.clone() for t in qkv]
    for t in qkv:
        t.grad = None
    return out.detach(), grads


@pytest.mark.parametrize("groups", [6, 2])
@pytest.mark.parametrize("layer_scaling", [False, True])
def test_sdpa_matches_megatron_attention(model_parallel, groups, layer_scaling):
    reference, sdpa = _pair(groups, apply_query_key_layer_scaling=layer_scaling)
    qkv = _qkv(groups)
    out_ref, grads_ref = _run(reference, qkv, None)
    out, grads = _run(sdpa, qkv, None)
    assert out.shape == (7, 3, 48)
    torch.testing.assert_close(out, out_ref, rtol=1e-9, atol=1e-9)
    for g, g_ref in zip(grads, grads_ref):
        torch.testing.assert_close(g, g_ref, rtol=1e-9, atol=1e-9)


def test_an_explicit_mask_takes_megatrons_path(model_parallel, monkeypatch):
    """A document mask is not causal attention: Megatron's forward computes it, unchanged."""
    reference, sdpa = _pair(2)
    monkeypatch.setattr(
        torch.nn.functional,
        "scaled_dot_product_attention",
        lambda *a, **k: pytest.fail("SDPA must not run with an explicit mask"),
    )
    mask = torch.ones(7, 7, dtype=torch.bool).triu(1)
    mask[4:, :4] = True  # two documents
    mask = mask.view(1, 1, 7, 7)
    qkv = _qkv(2)
    out_ref, _ = _run(reference, qkv, mask)
    out, _ = _run(sdpa, qkv, mask)
    torch.testing.assert_close(out, out_ref, rtol=0, atol=0)


def test_attention_dropout_applies_in_training_only(model_parallel):
    reference, sdpa = _pair(2, attention_dropout=0.5)
    qkv = _qkv(2)
    train_out = sdpa(*qkv, None)
    sdpa.eval()
    reference.eval()
    eval_out = sdpa(*qkv, None)
    assert not torch.allclose(train_out, eval_out)
    torch.testing.assert_close(eval_out, reference(*qkv, None), rtol=1e-9, atol=1e-9)
