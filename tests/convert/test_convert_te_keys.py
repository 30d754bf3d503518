"""The converter's per-layer keys are the ones Megatron-core's local and Transformer Engine specs ask for.

Transformer Engine is not installed here, so the TE spec is built by Megatron's own
``get_gpt_layer_with_transformer_engine_spec`` and ``TESpecProvider`` with each TE class replaced
by a marker of the same name; the spec's module tree then gives the key paths. What TE itself
contributes is the parameter names inside each module (``PARAMS``): a ``LayerNormLinear`` holds its
RMSNorm scale as ``layer_norm_weight`` (Megatron-core relies on that name, see the spec's own
``sharded_state_dict_keys_map`` checked below), linear layers carry ``_extra_state`` and
``TEDotProductAttention`` saves nothing unless its softmax is learnable.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from megatron.core.extensions import transformer_engine_spec_provider as te_provider
from megatron.core.models.gpt import gpt_layer_specs
from megatron.core.transformer.spec_utils import ModuleSpec

from megacpt.convert import families as fam

TE_CLASSES = ("TELinear", "TEColumnParallelLinear", "TERowParallelLinear", "TELayerNormColumnParallelLinear")
TE_CLASSES += ("TENorm", "TEDotProductAttention")
PARAMS = {
    "TELayerNormColumnParallelLinear": ("layer_norm_weight", "weight", "_extra_state"),
    "TEColumnParallelLinear": ("weight", "_extra_state"),
    "TERowParallelLinear": ("weight", "_extra_state"),
    "ColumnParallelLinear": ("weight", "_extra_state"),
    "RowParallelLinear": ("weight", "_extra_state"),
    "WrappedTorchNorm": ("weight",),
    "FusedLayerNorm": ("weight",),
    "TENorm": ("weight",),
    "TEDotProductAttention": (),
    "DotProductAttention": (),
    "IdentityOp": (),
}


def _modules(spec: ModuleSpec | type, path: str = "") -> dict[str, str]:
    """Module path -> class name for every leaf module of a layer spec."""
    if not isinstance(spec, ModuleSpec):
        return {path: spec.__name__}
    if spec.submodules is None:
        return {path: spec.module.__name__}
    out = {}
    for field in dataclasses.fields(spec.submodules):
        value = getattr(spec.submodules, field.name)
        if isinstance(value, ModuleSpec | type) and not field.name.endswith("_bda"):
            out.update(_modules(value, f"{path}{field.name}."))
    return out


def _keys(spec: ModuleSpec, params: dict[str, tuple[str, ...]] = PARAMS) -> set[str]:
    """The ``decoder.layers.*`` checkpoint keys of one layer, after the spec's key renaming."""
    rename: dict[str, Any] = spec.submodules.sharded_state_dict_keys_map
    keys = set()
    for path, cls in _modules(spec).items():
        assert cls in params, f"{path} is a {cls}; teach PARAMS its parameter names"
        for param in params[cls]:
            key = f"{path}{param}"
            for old, new in rename.items():
                if key.startswith(old):
                    key = new + key[len(old) :]
            keys.add(f"decoder.layers.{key}")
    return keys


def _converter_keys() -> set[str]:
    return {*fam.FAMILIES["llama"].layer_keys, fam.QKV_WEIGHT, fam.FC1, *fam.EXTRA_STATE_KEYS}


@pytest.fixture
def te_spec(monkeypatch: pytest.MonkeyPatch) -> ModuleSpec:
    for name in TE_CLASSES:
        monkeypatch.setattr(te_provider, name, type(name, (), {}))
    monkeypatch.setattr(te_provider, "is_te_min_version", lambda *_: True)
    monkeypatch.setattr(gpt_layer_specs, "TESpecProvider", te_provider.TESpecProvider, raising=False)
    return gpt_layer_specs.get_gpt_layer_with_transformer_engine_spec()  # as megacpt.model.builder calls it


def test_transformer_engine_spec_keys(te_spec: ModuleSpec) -> None:
    modules = _modules(te_spec)
    assert modules["self_attention.linear_qkv."] == "TELayerNormColumnParallelLinear"
    assert modules["mlp.linear_fc1."] == "TELayerNormColumnParallelLinear"
    assert (
        modules["input_layernorm."] == modules["pre_mlp_layernorm."] == "IdentityOp"
    )  # fused into the linears
    assert (
        te_spec.submodules.sharded_state_dict_keys_map["mlp.0.weight"] == "mlp.linear_fc1.layer_norm_weight"
    )
    assert _keys(te_spec) == _converter_keys()


def test_local_spec_keys() -> None:
    spec = gpt_layer_specs.get_gpt_layer_local_spec(normalization="RMSNorm")
    assert _keys(spec) == _converter_keys()


# Phi: a bias beside every weight (linear layers and the LayerNorm); the MLP's norm is the shared one.
PHI_PARAMS = {cls: (*names, "bias") if "weight" in names else names for cls, names in PARAMS.items()}
PHI_PARAMS["SharedInputNorm"] = ()


def test_phi_parallel_block_te_spec_keys(te_spec: ModuleSpec) -> None:
    from megacpt.model.builder import te_parallel_block_spec

    spec = te_parallel_block_spec(te_spec)
    modules = _modules(spec)
    assert modules["input_layernorm."] == "TENorm" and modules["pre_mlp_layernorm."] == "SharedInputNorm"
    assert modules["self_attention.linear_qkv."] == modules["mlp.linear_fc1."] == "TEColumnParallelLinear"
    phi = fam.FAMILIES["phi"]
    expected = {*phi.layer_keys, fam.QKV_WEIGHT, fam.QKV_BIAS, fam.FC1, *fam.EXTRA_STATE_KEYS}
    assert _keys(spec, PHI_PARAMS) == expected
