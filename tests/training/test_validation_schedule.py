"""When a run validates: held-out datasets alone mean one validation at the end, never none; stage
ends only when asked."""

from __future__ import annotations

import types

import pytest

from megacpt.config.loader import from_dict
from megacpt.config.schema import Config
from megacpt.training.validation import Validator, validates
from tests.helpers import tiny_config

HELD_OUT = [{"prefix": "held_out_text_document", "lang": "ko"}]


@pytest.mark.parametrize(
    "training,data,runs",
    [
        ({}, {}, False),
        ({"eval_interval": 2}, {}, True),
        ({"eval_at_start": True}, {}, True),
        ({"eval_at_stage_end": True}, {}, True),
        ({}, {"valid_datasets": HELD_OUT}, True),  # was silently never validated
    ],
)
def test_a_run_validates_when_asked_in_any_way(tmp_path, training, data, runs):
    config = from_dict(Config, tiny_config("train_text_document", tmp_path, training=training, data=data))
    assert validates(config) is runs
    runtime = types.SimpleNamespace(data_parallel_size=1)
    validator = Validator(config, {"ko": object()} if runs else {}, runtime)
    assert validator.due(4, at_end=True) is runs
    assert validator.due(0, at_start=True) is bool(training.get("eval_at_start"))
    assert validator.due(2, at_stage_end=True) is bool(training.get("eval_at_stage_end"))
