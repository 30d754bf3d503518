"""Data mixtures: spec validation, token budgets, and Megatron blended datasets built on real text."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import mistral_common
import numpy as np
import pytest
import sentencepiece as spm
import yaml
from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

from megacpt.data.cli import mix_main
from megacpt.data.mixture.budget import parse_token_count, token_budget_table
from megacpt.data.mixture.build import build_gpt_datasets
from megacpt.data.mixture.spec import DataMixture
from megacpt.errors import UserError

REPO = Path(__file__).resolve().parents[2]
CORPORA = REPO / "examples" / "corpora"
SP_MODEL = Path(mistral_common.__file__).parent / "data" / "tokenizer.model.v1"
EOD, PAD = 2, 0  # Mistral SentencePiece </s>; <unk> never ends a real document's pieces here
SHARDS = {
    "ko_klue_dev": "ko/klue_dev.jsonl",
    "ja_jsquad_valid_wiki": "ja/jsquad_valid_wiki.jsonl",
    "ja_jsts_jcqa_train": "ja/jsts_jcqa_train.jsonl",
    "en_wikitext2_valid": "en/wikitext2_valid.jsonl",
}


@pytest.fixture(scope="module")
def spec_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example spec copied beside shards made from the bundled corpora with Megatron's builder."""
    root = tmp_path_factory.mktemp("mixture")
    (root / "shards").mkdir()
    sp = spm.SentencePieceProcessor(model_file=str(SP_MODEL))
    for name, rel in SHARDS.items():
        with open(CORPORA / rel, encoding="utf-8") as f:
            texts = [json.loads(line)["text"] for line in f]
        prefix = root / "shards" / f"{name}_text_document"
        builder = IndexedDatasetBuilder(f"{prefix}.bin", dtype=np.uint16)
        for ids in sp.encode(texts):
            builder.add_document(np.array([*ids, EOD]), [len(ids) + 1])
        builder.finalize(f"{prefix}.idx")
    shutil.copy(REPO / "examples" / "data_mixture.yaml", root / "mixture.yaml")
    return root


def _build(mixture: DataMixture, cache: Path, **overrides):
    kwargs = dict(
        seq_length=32,
        seed=1234,
        split="98,2,0",
        train_samples=2_000,
        valid_samples=50,
        eod_id=EOD,
        pad_id=PAD,
        cache_dir=str(cache),
    )
    kwargs.update(overrides)
    return build_gpt_datasets(mixture, **kwargs)


def test_example_spec_budget_table(spec_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mixture = DataMixture.from_yaml(spec_dir / "mixture.yaml")
    assert mixture.languages() == ["ko", "ja", "en"]
    assert mixture.entries[0].prefix == str(spec_dir / "shards" / "ko_klue_dev_text_document")
    rows = token_budget_table(mixture, 50_000_000, split="98,2,0")
    assert [r.tokens for r in rows] == [22_500_000, 12_500_000, 7_500_000, 7_500_000]
    for row in rows:
        assert row.dataset_tokens > 0 and row.epochs == pytest.approx(row.tokens / row.dataset_tokens)
    whole = token_budget_table(mixture, 50_000_000)
    for entry, w, r in zip(mixture.entries, whole, rows):
        assert w.dataset_tokens == os.path.getsize(entry.bin_path) // 2  # uint16 tokens
        assert 0.95 * w.dataset_tokens < r.dataset_tokens < w.dataset_tokens  # ~98% of documents
    mix_main([str(spec_dir / "mixture.yaml"), "--tokens", "50M", "--split", "98,2,0"])
    out = capsys.readouterr().out
    assert "ko_klue" in out and "45.00%" in out and "22,500,000" in out and "50,000,000" in out


def test_blended_token_shares_match_weights_over_100k_samples(spec_dir: Path, tmp_path: Path) -> None:
    weights = [3.0, 1.5, 0.7, 0.3]  # deliberately not normalised
    items = [
        {"prefix": f"shards/{name}_text_document", "weight": w, "lang": name[:2]}
        for name, w in zip(SHARDS, weights)
    ]
    mixture = DataMixture.from_list(items, base_dir=str(spec_dir))
    data = _build(mixture, tmp_path, train_samples=100_000, seq_length=16)
    assert len(data.train) >= 100_000
    tokens = np.zeros(len(weights))
    for i in range(100_000):
        item = data.train[i]
        assert {k: tuple(v.shape) for k, v in item.items() if k != "dataset_id"} == {
            "tokens": (16,),
            "labels": (16,),
            "loss_mask": (16,),
            "position_ids": (16,),
        }
        tokens[int(item["dataset_id"])] += float(item["loss_mask"].sum())
    shares = tokens / tokens.sum()
    expected = np.array(weights) / sum(weights)
    assert np.abs(shares - expected).max() < 0.01, (shares, expected)


def test_validation_is_per_language_and_disjoint_from_train(spec_dir: Path, tmp_path: Path) -> None:
    mixture = DataMixture.from_yaml(spec_dir / "mixture.yaml")
    data = _build(mixture, tmp_path)
    assert sorted(data.valid) == ["en", "ja", "ko"]
    assert all(len(v) >= 50 for v in data.valid.values())
    ja = data.valid["ja"]
    assert {int(ja[i]["dataset_id"]) for i in range(len(ja))} == {0, 1}  # both Japanese sets blend
    for train_part, entry in zip(data.train.datasets, mixture.entries):
        valid_set = data.valid[entry.lang]
        valid_parts = valid_set.datasets if hasattr(valid_set, "datasets") else [valid_set]
        (valid_part,) = [p for p in valid_parts if p.dataset_path == entry.prefix]
        assert train_part.indices.max() < valid_part.indices.min()


def test_order_depends_only_on_mixture_seed_and_sizes(spec_dir: Path, tmp_path: Path) -> None:
    mixture = DataMixture.from_yaml(spec_dir / "mixture.yaml")
    first = _build(mixture, tmp_path / "a")
    again = _build(mixture, tmp_path / "b")  # a fresh cache: same order
    cached = _build(mixture, tmp_path / "a")  # a cache hit: same order
    probe = [0, 1, 17, 999, 1999]
    tokens = [first.train[i]["tokens"].tolist() for i in probe]
    assert tokens == [again.train[i]["tokens"].tolist() for i in probe]
    assert tokens == [cached.train[i]["tokens"].tolist() for i in probe]
    assert first.fingerprint == again.fingerprint
    reseeded = _build(mixture, tmp_path / "c", seed=7)
    assert tokens != [reseeded.train[i]["tokens"].tolist() for i in probe]
    assert reseeded.fingerprint != first.fingerprint
    reweighted = DataMixture.from_list(
        [
            {"prefix": e.prefix, "weight": e.weight * (2 if i == 0 else 1), "lang": e.lang}
            for i, e in enumerate(mixture.entries)
        ]
    )
    assert _build(reweighted, tmp_path / "d").fingerprint != first.fingerprint


def test_default_cache_lives_beside_the_data(spec_dir: Path, tmp_path: Path) -> None:
    shards = tmp_path / "copy"
    shutil.copytree(spec_dir / "shards", shards)
    mixture = DataMixture.from_list(
        [{"prefix": str(shards / "en_wikitext2_valid_text_document"), "weight": 1}]
    )
    data = build_gpt_datasets(
        mixture,
        seq_length=32,
        seed=1,
        split="90,10",
        train_samples=100,
        valid_samples=10,
        eod_id=EOD,
        pad_id=PAD,
        cache_dir=None,
    )
    assert len(data.train) >= 100 and list(data.valid) == ["und"]
    assert any(p.suffix == ".npy" for p in shards.rglob("*"))


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ([], "at least one dataset"),
        ([{"prefix": "a", "weight": 1, "size": 3}], "unknown config key 'datasets[0].size'"),
        (
            [{"weight": 1}],
            "datasets[0].prefix: the path of a .bin/.idx pair (without the suffix) is required",
        ),
        ([{"prefix": "a"}], "datasets[0]: missing required key 'weight'"),
        ([{"prefix": "a", "weight": 0}], "positive"),
        ([{"prefix": "a", "weight": -2.5}], "positive"),
        ([{"prefix": "a", "weight": "0.5"}], "datasets[0].weight: expected float, got str '0.5'"),
        ([{"prefix": "a", "weight": True}], "datasets[0].weight: expected float, got bool True"),
        ([{"prefix": "a", "weight": "1e-3"}], "datasets[0].weight: expected float, got str '1e-3'"),
        ([{"prefix": "a", "weight": float("nan")}], "positive finite"),
        ([{"prefix": "a", "weight": 1, "lang": 3}], "datasets[0].lang: expected str, got int 3"),
        ([{"prefix": "a", "weight": 1, "lang": " "}], "datasets[0].lang must be a non-empty language tag"),
        ([{"prefix": "x/a", "weight": 1}, {"prefix": "y/a", "weight": 1}], "repeated: ['a']"),
        (["a"], "expected a mapping"),
    ],
)
def test_bad_entries_are_user_errors(items: list, message: str) -> None:
    with pytest.raises(UserError) as err:
        DataMixture.from_list(items)
    assert message in str(err.value)


def test_bad_spec_files(tmp_path: Path, spec_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "m.yaml"
    spec.write_text(yaml.safe_dump({"datasets": [{"prefix": "a", "weight": 1}], "seed": 3}))
    with pytest.raises(UserError, match=r"m.yaml: unknown config key 'seed'"):
        DataMixture.from_yaml(spec)
    spec.write_text("datasets: [\n")
    with pytest.raises(UserError, match="not valid YAML"):
        DataMixture.from_yaml(spec)
    spec.write_text(yaml.safe_dump({"datasets": [{"prefix": "nowhere/ko", "weight": 1}]}))
    missing = os.path.join(str(tmp_path), "nowhere", "ko.idx")
    with pytest.raises(UserError, match=f"missing file {missing}"):
        token_budget_table(DataMixture.from_yaml(spec), 10)
    with pytest.raises(SystemExit) as code:
        mix_main([str(spec), "--tokens", "10"])
    assert code.value.code == 2 and f"error: dataset 'ko': missing file {missing}" in capsys.readouterr().err
    bad = tmp_path / "bad"
    (tmp_path / "bad.bin").write_bytes(b"")
    (tmp_path / "bad.idx").write_bytes(b"not an index at all")
    with pytest.raises(UserError, match="not a Megatron indexed-dataset index"):
        DataMixture.from_list([{"prefix": str(bad), "weight": 1}]).check_files()
    good = DataMixture.from_yaml(spec_dir / "mixture.yaml")
    with pytest.raises(UserError, match="no documents for validation"):
        _build(good, tmp_path, split="100,0,0")
    with pytest.raises(UserError, match="pad id must differ"):
        _build(good, tmp_path, pad_id=EOD)
    with pytest.raises(UserError, match="split must be"):
        _build(good, tmp_path, split="a,b")
    tiny = tmp_path / "tiny"
    builder = IndexedDatasetBuilder(f"{tiny}.bin", dtype=np.uint16)
    for doc in ([5, 6, 7, EOD], [8, 9, EOD]):
        builder.add_document(np.array(doc), [len(doc)])
    builder.finalize(f"{tiny}.idx")
    with pytest.raises(
        UserError, match="dataset 'tiny' has 2 documents: the split leaves its valid part empty"
    ):
        _build(DataMixture.from_list([{"prefix": str(tiny), "weight": 1}]), tmp_path)


def test_parse_token_count() -> None:
    assert [parse_token_count(t) for t in ["2000000", "2e9", "500M", "100B", "1.5T", "4_096k"]] == [
        2_000_000,
        2_000_000_000,
        500_000_000,
        100_000_000_000,
        1_500_000_000_000,
        4_096_000,
    ]
    for bad in ["", "ten"]:
        with pytest.raises(
            UserError, match=r"^not a token count: '\w*' \(examples: 2000000, 2e9, 500M, 100B\)$"
        ):
            parse_token_count(bad)
    for bad in ["0", "-5M", "inf"]:
        with pytest.raises(UserError, match=f"^a token count must be at least 1, got '{bad}'$"):
            parse_token_count(bad)


_DISTRIBUTED_SCRIPT = """
import json, os, sys
import torch.distributed as dist
from megacpt.data.mixture.build import build_gpt_datasets
from megacpt.data.mixture.spec import DataMixture
dist.init_process_group("gloo")
rank = dist.get_rank()
spec, out = sys.argv[1], sys.argv[2]
kwargs = dict(seq_length=32, seed=5, split="98,2,0", train_samples=500, valid_samples=20, eod_id=2, pad_id=0,
              cache_dir=os.path.join(out, "cache"))
data = build_gpt_datasets(DataMixture.from_yaml(spec), **kwargs)
rows = [data.train[i]["tokens"].tolist() for i in range(0, 500, 50)]
skipped = build_gpt_datasets(DataMixture.from_yaml(spec), build_on_this_rank=rank == 0, **kwargs)
with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
    json.dump({"rows": rows, "fingerprint": data.fingerprint, "skipped_is_none": skipped.train is None}, f)
dist.destroy_process_group()
"""


@pytest.mark.multiproc
def test_two_gloo_ranks_build_once_and_agree(spec_dir: Path, tmp_path: Path) -> None:
    script = tmp_path / "build.py"
    script.write_text(_DISTRIBUTED_SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    # A session of its own, so that a hang kills the launcher and both ranks, not the launcher alone.
    proc = subprocess.Popen(
        [*cmd, str(script), str(spec_dir / "mixture.yaml"), str(tmp_path)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _, stderr = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail("two-rank dataset build hung")
    assert proc.returncode == 0, stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["rows"] == ranks[1]["rows"] and ranks[0]["fingerprint"] == ranks[1]["fingerprint"]
    assert [r["skipped_is_none"] for r in ranks] == [False, True]
    # Both ranks hashed the same indices: one set of train index files per dataset.
    assert len(list((tmp_path / "cache").glob("*-GPTDataset-train-shuffle_index.npy"))) == 4


def test_1e_3_is_a_number_in_a_mixture_file_as_in_a_run_config(tmp_path: Path) -> None:
    from megacpt.config.loader import parse_override

    spec = tmp_path / "m.yaml"
    spec.write_text("datasets:\n  - {prefix: a, weight: 1e-3}\n  - {prefix: b, weight: 2}\n")
    assert [e.weight for e in DataMixture.from_yaml(spec).entries] == [0.001, 2.0]
    assert parse_override("optimizer.lr=3e-4") == ("optimizer.lr", 0.0003)
