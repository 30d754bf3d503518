"""The cleaning stage end to end: bad input is counted not fatal, output is atomic and deterministic."""

from __future__ import annotations

import gzip
import itertools
import json
import multiprocessing
from pathlib import Path

import multiprocess
import numpy as np
import pytest

from megacpt.clean import cli as clean_cli
from megacpt.clean import minhash
from megacpt.clean.config import CleanConfig
from megacpt.clean.documents import DocumentCleaner, position
from megacpt.clean.minhash import KEY_DTYPE, BandPairs, FirstCopies, minhash_config, record_dtype
from megacpt.clean.pipeline import clean_corpus
from megacpt.clean.plan import plan_tasks
from megacpt.clean.report import REMOVAL_REASONS, CleanReport
from megacpt.errors import UserError

REPO = Path(__file__).resolve().parents[2]
KLUE = REPO / "examples" / "corpora" / "ko" / "klue_dev.jsonl"


def _korean(n: int) -> list[dict]:
    with open(KLUE, encoding="utf-8") as f:
        return [json.loads(next(f)) for _ in range(n)]


@pytest.fixture()
def messy(tmp_path: Path) -> Path:
    """30 real Korean documents with every kind of bad line mixed in, line numbers noted below."""
    docs = _korean(30)
    near = dict(docs[3], id="near")
    middle = len(near["text"]) // 2
    near["text"] = near["text"][:middle] + "가나" + near["text"][middle + 2 :]
    spaced = dict(docs[5], id="exact", text="  " + docs[5]["text"].replace(" ", "   ") + "\n")
    bad: list[bytes] = [
        b'{"id": "m1", "text": "unterminated',  # line 31: malformed_json
        b'{"id": "k1", "body": "no text key"}',  # 32: missing_key
        b"[1, 2, 3]",  # 33: missing_key (not an object)
        b'{"id": "k3", "text": 42}',  # 34: missing_key (not a string)
        b'{"id": "u1", "text": "\xff\xfe broken"}',  # 35: invalid_utf8
        b"",  # 36: empty (blank line)
        json.dumps({"id": "e2", "text": " \u200b\ufeff \n "}).encode(),  # 37: empty after normalisation
        json.dumps({"id": "h1", "text": "가" * 1_500_000}, ensure_ascii=False).encode(),  # 38: huge (4.5 MB)
        json.dumps(
            {"id": "en", "text": "This is plainly an English sentence about the weather in London."}
        ).encode(),  # 39
        json.dumps(near, ensure_ascii=False).encode(),  # 40: near_duplicate of line 4
        json.dumps(spaced, ensure_ascii=False).encode(),  # 41: exact_duplicate of line 6 (whitespace differs)
        json.dumps({"id": "short", "text": "짧은 글"}, ensure_ascii=False).encode(),  # 42: length
    ]
    lines = [json.dumps(d, ensure_ascii=False).encode() for d in docs] + bad
    path = tmp_path / "messy.jsonl"
    # A byte-order mark first, no final newline: the first and last lines must still count.
    path.write_bytes(b"\xef\xbb\xbf" + b"\n".join(lines))
    return path


CONFIG = CleanConfig(languages=("ko",), max_line_bytes=100_000)


def test_bad_input_is_counted_and_reported(messy: Path, tmp_path: Path) -> None:
    out = tmp_path / "clean.jsonl"
    report = clean_corpus(str(messy), str(out), config=CONFIG, workers=2)
    removed = {k: v for k, v in report.removed.items() if v}
    assert removed == {
        "malformed_json": 1,
        "missing_key": 3,
        "invalid_utf8": 1,
        "empty": 2,
        "huge_document": 1,
        "language": 1,
        "length": 1,
        "exact_duplicate": 1,
        "near_duplicate": 1,
    }
    assert (report.documents_in, report.documents_out) == (42, 30)
    kept = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [d["id"] for d in kept] == [d["id"] for d in _korean(30)]
    on_disk = json.loads((tmp_path / "clean.jsonl.report.json").read_text(encoding="utf-8"))
    assert list(on_disk["removed"]) == list(REMOVAL_REASONS)
    assert on_disk["removed"]["near_duplicate"]["examples"][0]["id"] == "near"
    assert "with line 4" in on_disk["removed"]["near_duplicate"]["examples"][0]["why"]
    assert on_disk["removed"]["exact_duplicate"]["examples"] == [
        {"file": str(messy), "line": 41, "id": "exact", "why": "same text as line 6"}
    ]
    assert on_disk["removed"]["huge_document"]["examples"][0]["line"] == 38
    assert on_disk["removed"]["language"]["examples"][0]["why"].startswith("identified as en")
    assert on_disk["languages_out"] == {"ko": 30}


def test_output_is_the_same_for_any_worker_count(messy: Path, tmp_path: Path) -> None:
    one = clean_corpus(str(messy), str(tmp_path / "one.jsonl"), config=CONFIG, workers=1)
    two = clean_corpus(str(messy), str(tmp_path / "two.jsonl"), config=CONFIG, workers=2)
    assert (tmp_path / "one.jsonl").read_bytes() == (tmp_path / "two.jsonl").read_bytes()
    assert one.removed == two.removed and one.examples == two.examples


def test_failed_run_leaves_existing_output_untouched_then_resumes(
    messy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "clean.jsonl"
    out.write_text("precious earlier output\n")
    (tmp_path / "clean.jsonl.report.json").write_text("{}\n")  # it is an earlier clean's output
    clean = DocumentCleaner.__call__

    def exploding(self: DocumentCleaner, raw: bytes | None, first_line: bool = False) -> object:
        if raw is not None and b'"id": "near"' in raw:  # line 40, in the second task's half
            raise RuntimeError("disk on fire")
        return clean(self, raw, first_line)

    monkeypatch.setattr(DocumentCleaner, "__call__", exploding)
    for workers in (1, 2):
        with pytest.raises(RuntimeError, match="disk on fire"):
            clean_corpus(str(messy), str(out), config=CONFIG, workers=workers, overwrite=True)
        assert not multiprocessing.active_children() and not multiprocess.active_children()
    assert out.read_text() == "precious earlier output\n"
    assert (tmp_path / "clean.jsonl.report.json").read_text() == "{}\n"
    work = tmp_path / ".clean.jsonl.clean-work"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        work.name,
        "clean.jsonl",
        "clean.jsonl.report.json",
        "messy.jsonl",
    ]
    monkeypatch.undo()
    # The same command again resumes (what finished is not run again) and gives a fresh run's output.
    clean_corpus(str(messy), str(out), config=CONFIG, workers=2, overwrite=True)
    fresh = clean_corpus(str(messy), str(tmp_path / "fresh.jsonl"), config=CONFIG, workers=2)
    assert out.read_bytes() == (tmp_path / "fresh.jsonl").read_bytes()
    assert CleanReport.read(tmp_path / "clean.jsonl.report.json").removed == fresh.removed
    assert not work.exists()


def test_dedup_switches(messy: Path, tmp_path: Path) -> None:
    base = dict(languages=("ko",), max_line_bytes=100_000)
    only_exact = clean_corpus(str(messy), str(tmp_path / "a"), config=CleanConfig(**base, near_dedup=False))
    assert only_exact.removed["near_duplicate"] == 0 and only_exact.removed["exact_duplicate"] == 1
    only_near = clean_corpus(str(messy), str(tmp_path / "b"), config=CleanConfig(**base, exact_dedup=False))
    assert only_near.removed["exact_duplicate"] == 0 and only_near.removed["near_duplicate"] == 2


def test_bad_paths_and_tool_exit_codes(
    messy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(UserError, match="is or contains the input"):
        clean_corpus(str(messy), str(messy))
    with pytest.raises(UserError, match="^the inputs, the output and the report must be different files$"):
        clean_corpus(str(messy), str(tmp_path / "out.jsonl"), str(tmp_path / "out.jsonl"))
    with pytest.raises(UserError, match="unknown Unicode normalisation"):
        CleanConfig(normalization="NFX")
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(UserError, match="cannot write"):
        clean_corpus(str(messy), str(blocker / "out.jsonl"))
    with pytest.raises(SystemExit) as code:
        clean_cli.main([str(tmp_path / "nope.jsonl"), str(tmp_path / "out.jsonl")])
    assert (
        code.value.code == 2
        and f"error: no input file matches {tmp_path / 'nope.jsonl'}" in capsys.readouterr().err
    )
    assert not (tmp_path / "out.jsonl").exists()
    clean_cli.main(
        [str(messy), str(tmp_path / "out.jsonl"), "--lang", "ko", "--workers", "2", "--disable", "length"]
    )
    out = capsys.readouterr().out
    assert out.startswith("42 documents in, 31 kept") and "near_duplicate" in out
    report = json.loads((tmp_path / "out.jsonl.report.json").read_text(encoding="utf-8"))
    assert report["config"]["quality"]["disabled"] == ["length"] and report["workers"] == 2
    before = (tmp_path / "out.jsonl").read_bytes()
    with pytest.raises(SystemExit) as code:  # an existing output needs --overwrite
        clean_cli.main([str(messy), str(tmp_path / "out.jsonl"), "--lang", "ja"])
    assert code.value.code == 2 and "already exists; pass --overwrite" in capsys.readouterr().err
    assert (tmp_path / "out.jsonl").read_bytes() == before
    clean_cli.main([str(messy), str(tmp_path / "out.jsonl"), "--json-keys", "text", "--overwrite"])
    assert (tmp_path / "out.jsonl").read_bytes() != before


def test_unknown_language_codes_and_empty_outputs_are_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="unknown language code 'korean'"):
        CleanConfig(languages=("korean",))
    corpus = tmp_path / "ko.jsonl"
    corpus.write_text(
        "".join(
            json.dumps({"text": f"안녕하세요 여러분, 오늘은 {i}번째 문장입니다."}, ensure_ascii=False) + "\n"
            for i in range(5)
        ),
        encoding="utf-8",
    )
    with pytest.raises(UserError, match=r"kept 0 of 5 documents \(language: 5\); nothing written"):
        clean_corpus(
            str(corpus), str(tmp_path / "out.jsonl"), config=CleanConfig(languages=("ja",)), workers=1
        )
    assert not (tmp_path / "out.jsonl").exists() and (tmp_path / "out.jsonl.report.json").is_file()


def test_many_inputs_in_one_run_files_globs_directories_and_compressed(messy: Path, tmp_path: Path) -> None:
    """Inputs are read in turn as one corpus: duplicates across files are found, a report example
    names its file, and the output equals that of the concatenated input."""
    lines = messy.read_bytes().split(b"\n")
    assert len(lines) == 42
    split = tmp_path / "parts"
    (split / "deeper").mkdir(parents=True)
    (split / "a.jsonl").write_bytes(b"\n".join(lines[:20]) + b"\n")
    with gzip.open(split / "deeper" / "b.jsonl.gz", "wb") as f:
        f.write(b"\n".join(lines[20:30]) + b"\n")
    (split / "notes.txt").write_text("not JSONL: not read from a directory")
    (tmp_path / "c.jsonl").write_bytes(b"\n".join(lines[30:]))
    one = clean_corpus(str(messy), str(tmp_path / "one.jsonl"), config=CONFIG, workers=1)
    many = clean_corpus(
        [str(split), str(tmp_path / "c.json*")], str(tmp_path / "many.jsonl"), config=CONFIG, workers=2
    )
    assert (tmp_path / "many.jsonl").read_bytes() == (tmp_path / "one.jsonl").read_bytes()
    assert many.removed == one.removed and many.input == [
        str(split / "a.jsonl"),
        str(split / "deeper" / "b.jsonl.gz"),
        str(tmp_path / "c.jsonl"),
    ]
    (example,) = many.examples["exact_duplicate"]
    assert example == {
        "file": str(tmp_path / "c.jsonl"),
        "line": 11,
        "id": "exact",
        "why": f"same text as {split / 'a.jsonl'} line 6",
    }
    with pytest.raises(UserError, match=f"^directory {tmp_path / 'empty'} holds no JSONL files$"):
        (tmp_path / "empty").mkdir()
        clean_corpus(str(tmp_path / "empty"), str(tmp_path / "x.jsonl"))


def test_input_names_that_could_lose_or_double_data(messy: Path, tmp_path: Path) -> None:
    raw = tmp_path / "raw.jsonl"
    raw.write_bytes(messy.read_bytes())
    with pytest.raises(UserError, match=f"^{raw} exists and is not an earlier clean output"):
        clean_corpus(
            str(messy), str(raw), config=CONFIG, overwrite=True
        )  # `clean raw/*.jsonl` without OUTPUT
    assert raw.read_bytes() == messy.read_bytes()
    with pytest.raises(UserError, match=f"^input {tmp_path}/./raw.jsonl is named twice \\(also as {raw}\\)"):
        clean_corpus([str(raw), f"{tmp_path}/./raw.jsonl"], str(tmp_path / "out.jsonl"), config=CONFIG)
    bracketed = tmp_path / "data[1].jsonl"
    bracketed.write_bytes(messy.read_bytes())
    assert clean_corpus(bracketed, str(tmp_path / "b.jsonl"), config=CONFIG).documents_in == 42
    folder = tmp_path / "folder"
    (folder / ".ipynb_checkpoints").mkdir(parents=True)
    (folder / "a.jsonl").write_bytes(messy.read_bytes())
    (folder / ".ipynb_checkpoints" / "a.jsonl").write_bytes(messy.read_bytes())
    (folder / "config.json").write_text('{"text": "a config, not data"}')
    assert clean_corpus(str(folder), str(tmp_path / "f.jsonl"), config=CONFIG).input == [
        str(folder / "a.jsonl")
    ]


def test_any_task_count_gives_the_same_output_and_shards_concatenate_to_it(
    messy: Path, tmp_path: Path
) -> None:
    """Tasks split one plain file mid-way and take a compressed one whole; the first copy kept, the
    report and the output do not depend on how many tasks there are (more tasks than lines too)."""
    lines = messy.read_bytes().split(b"\n")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_bytes(b"\n".join(lines[:25]) + b"\n")
    with gzip.open(tmp_path / "in" / "b.jsonl.gz", "wb") as f:
        f.write(b"\n".join(lines[25:35]) + b"\n")
    (tmp_path / "in" / "c.jsonl").write_bytes(b"\n".join(lines[35:]) + b"\n" + b"\n".join(lines[3:8]))
    inputs = str(tmp_path / "in")
    runs = {
        t: clean_corpus(inputs, str(tmp_path / f"t{t}.jsonl"), config=CONFIG, workers=2, tasks=t)
        for t in (1, 3, 50)
    }
    outputs = {t: (tmp_path / f"t{t}.jsonl").read_bytes() for t in runs}
    assert outputs[1] == outputs[3] == outputs[50]
    assert runs[1].removed == runs[3].removed == runs[50].removed and runs[1].examples == runs[50].examples
    assert runs[1].removed["exact_duplicate"] == 6  # lines 4-8 again at the end, and the spaced copy
    sharded = clean_corpus(inputs, str(tmp_path / "shards") + "/", config=CONFIG, workers=2, tasks=3)
    parts = sorted((tmp_path / "shards").glob("part-*.jsonl"))
    assert b"".join(p.read_bytes() for p in parts) == outputs[1]  # empty shards are left out
    plan = plan_tasks(runs[1].input, 3)  # the 4.5 MB line in c.jsonl: c is split three ways
    assert [[(u.index, u.start > 0, u.end is None) for u in units] for units in plan] == [
        [(0, False, True), (1, False, True), (2, False, False)],
        [(2, True, False)],
        [(2, True, True)],
    ]
    assert json.loads((tmp_path / "shards" / "report.json").read_text())["removed"] == {
        r: {"count": runs[1].removed[r], "examples": runs[1].examples[r]} for r in REMOVAL_REASONS
    }
    assert sharded.documents_out == runs[1].documents_out
    with pytest.raises(UserError, match="already exists; pass --overwrite"):
        clean_corpus(inputs, str(tmp_path / "shards") + "/", config=CONFIG, workers=2)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("a folder megacpt did not write")
    with pytest.raises(UserError, match="refusing to replace it"):
        clean_corpus(inputs, str(tmp_path / "mine") + "/", config=CONFIG, overwrite=True)
    assert (tmp_path / "mine" / "notes.txt").exists()


def test_a_work_folder_of_another_run_is_replaced_not_mixed_in(messy: Path, tmp_path: Path) -> None:
    work = tmp_path / ".out.jsonl.clean-work"
    (work / "kept").mkdir(parents=True)
    (work / "run.json").write_text('{"inputs": [], "tasks": 9}')
    (work / "kept" / "00000.jsonl").write_text("another run's documents\n")
    report = clean_corpus(str(messy), str(tmp_path / "out.jsonl"), config=CONFIG, workers=1)
    assert report.documents_out == 30 and not work.exists()
    assert b"another run" not in (tmp_path / "out.jsonl").read_bytes()


def test_nothing_kept_creates_no_output_folder(tmp_path: Path) -> None:
    corpus = tmp_path / "en.jsonl"
    corpus.write_text(json.dumps({"text": "An English sentence that is long enough to be kept."}) + "\n")
    with pytest.raises(UserError, match="kept 0 of 1 documents .language: 1.; nothing written to"):
        clean_corpus(str(corpus), str(tmp_path / "out") + "/", config=CleanConfig(languages=("ko",)))
    assert not (tmp_path / "out").exists() and not (tmp_path / ".out.clean-work").exists()
    assert json.loads((tmp_path / "out.report.json").read_text())["removed"]["language"]["count"] == 1
    # the same command with another setting goes ahead
    report = clean_corpus(str(corpus), str(tmp_path / "out") + "/", config=CleanConfig(languages=("en",)))
    assert report.documents_out == 1 and (tmp_path / "out" / "part-00000.jsonl").exists()


def _dedup_inputs(folder: Path, tasks: list[np.ndarray], pairs: list[tuple[int, int, int, int]]) -> None:
    """The clean stage's records and sorted exact keys per task, and one band's pairs, as the cluster
    stage reads them."""
    for name in ("records", "keys", "buckets"):
        (folder / name).mkdir()
    for rank, table in enumerate(tasks):
        table.tofile(folder / "records" / f"{rank:05d}.bin")
        sorted_keys = np.empty(len(table), KEY_DTYPE)
        sorted_keys["key"], sorted_keys["position"], sorted_keys["index"] = (
            table["key"],
            table["position"],
            range(len(table)),
        )
        np.sort(sorted_keys, order=("key", "position")).tofile(folder / "keys" / f"{rank:05d}.bin")
    np.array(pairs, dtype="<u4").reshape(-1, 4).tofile(folder / "buckets" / "00000_00.dups")


def test_first_copies_compare_with_documents_that_stay_not_through_chains(tmp_path: Path) -> None:
    """A band run A, B, C in input order with J(A,B) = J(B,C) = 0.9 but J(A,C) = 0.8 < 0.85: B goes as
    a copy of A, and C stays (it is near only B, which went); D, in another task, is A's text."""
    num_perm = 10
    signature_a = np.arange(num_perm, dtype=np.uint32)
    signature_b, signature_c = signature_a.copy(), signature_a.copy()
    signature_b[0] = signature_c[0] = 100
    signature_c[9] = 200
    keys = [b"a" * 16, b"b" * 16, b"c" * 16]
    task0 = np.zeros(3, record_dtype(num_perm))
    task0["position"] = [10, 20, 30]
    task0["key"] = keys
    task0["signature"] = [signature_a, signature_b, signature_c]
    task1 = np.zeros(1, record_dtype(num_perm))
    task1["position"], task1["key"], task1["signature"] = [position(1, 0)], [keys[0]], [signature_a]
    _dedup_inputs(tmp_path, [task0, task1], [(0, 0, 0, 1), (0, 1, 0, 2)])
    FirstCopies(tmp_path, 2, num_perm, exact=True, near=True, threshold=0.85).run()
    first_task = np.load(tmp_path / "removals" / "00000.npy")
    assert first_task["index"].tolist() == [1] and first_task["first"].tolist() == [10]
    assert first_task["jaccard"].tolist() == pytest.approx([0.9]) and not first_task["exact"].any()
    second_task = np.load(tmp_path / "removals" / "00001.npy")
    assert second_task[["index", "first", "exact"]].tolist() == [(0, 10, 1)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_first_copies_match_the_plain_walk(tmp_path: Path, monkeypatch, seed: int) -> None:
    """The cluster stage against the decision written plainly (lists of the documents that stay per
    run): runs longer than a block of pairs, longer than twice the edge compared, in several bands,
    across tasks (one empty), with exact copies; each removal names the same earlier copy."""
    edge = 2  # the first and last `edge` documents that stay in a run are compared
    monkeypatch.setattr(minhash, "RUN_EDGE", edge)
    rng = np.random.default_rng(seed)
    num_perm, threshold, sizes = 8, 0.5, [40, 0, 25, 35]
    tasks = []
    for size in sizes:
        table = np.zeros(size, record_dtype(num_perm))
        table["signature"] = rng.integers(0, 3, size=(size, num_perm))
        table["key"] = [bytes([k]) * 16 for k in rng.integers(0, 60, size)]
        tasks.append(table)
    records = np.concatenate(tasks)
    records["position"] = np.arange(len(records)) * 7 + 3  # increasing in input order
    base = np.cumsum([0, *sizes])
    for rank, table in enumerate(tasks):
        table["position"] = records["position"][base[rank] : base[rank + 1]]
    where = [(rank, index) for rank, size in enumerate(sizes) for index in range(size)]
    runs = []  # each band's runs of documents (numbers in input order), every document in one run
    for values in (4, 4, 50):  # long runs, and runs of two or three
        labels = rng.integers(0, values, len(records))
        runs += [np.flatnonzero(labels == label).tolist() for label in range(values)]
    pairs = [(*where[a], *where[b]) for run in runs for a, b in itertools.pairwise(run)]
    _dedup_inputs(tmp_path, tasks, pairs)
    FirstCopies(tmp_path, len(sizes), num_perm, True, True, threshold, pairs_in_memory=5).run()
    found = {
        (rank, int(row["index"])): (int(row["first"]), bool(row["exact"]), round(float(row["jaccard"]), 4))
        for rank in range(len(sizes))
        for row in np.load(tmp_path / "removals" / f"{rank:05d}.npy")
    }

    expected, first_with_key = {}, {}
    survivors: list[list[int]] = [[] for _ in runs]
    for number, record in enumerate(records):
        key = bytes(record["key"])
        if key in first_with_key:
            expected[where[number]] = (first_with_key[key], True, 1.0)
            continue
        first_with_key[key] = int(record["position"])
        mine = [k for k, run in enumerate(runs) if number in run]
        others = {o for k in mine for o in survivors[k][:edge] + survivors[k][-edge:]}
        best = None
        for other in sorted(others):
            jaccard = float(np.mean(record["signature"] == records[other]["signature"]))
            if jaccard >= threshold and (best is None or jaccard > best[0]):
                best = (jaccard, int(records[other]["position"]))
        if best is not None:
            expected[where[number]] = (best[1], False, round(best[0], 4))
        else:
            for k in mine:
                survivors[k].append(number)
    # long runs, and both near and exact copies
    assert max(len(s) for s in survivors) > 2 * edge and len(expected) > 20
    assert any(not exact for _, exact, _ in expected.values())
    assert found == expected


def test_a_lone_surrogate_escape_is_invalid_utf8_not_a_crash(tmp_path: Path) -> None:
    corpus = tmp_path / "in.jsonl"
    good = "A sentence long enough for the length filter, written in plain English."
    corpus.write_text(
        json.dumps({"text": good})
        + "\n"
        + '{"id": "s", "text": "broken \\ud800 text of enough length here"}\n'
    )
    report = clean_corpus(str(corpus), str(tmp_path / "out.jsonl"), config=CleanConfig(), workers=1)
    assert report.documents_out == 1 and report.removed["invalid_utf8"] == 1
    assert report.examples["invalid_utf8"][0]["why"].startswith("lone surrogate")


@pytest.mark.parametrize("records_in_memory", [4, 40, 1 << 20])
def test_band_pairs_are_datatroves(tmp_path: Path, records_in_memory: int) -> None:
    """The pairs our numpy merge writes are those datatrove's ``MinhashDedupBuckets`` writes, in its
    order, for blocks of any size: runs of equal values longer than a block, across tasks, in tasks
    with no documents."""
    from datatrove.pipeline.dedup.minhash import MinhashDedupBuckets

    config = minhash_config(0.8, 117, 5)
    config.num_buckets, config.hashes_per_bucket = 2, 3
    rng = np.random.default_rng(0)
    for band in range(2):
        for task, count in enumerate([120, 0, 7, 300, 1, 64]):
            values = rng.integers(0, 3 if band else 6, size=(count, 3), dtype=np.uint32)  # many runs
            table = np.column_stack([values, np.arange(count, dtype=np.uint32)])
            table = table[np.lexsort(table.T[::-1])]
            path = tmp_path / "signatures" / f"bucket_{band:03d}" / f"{task:05d}.minhash.sig"
            path.parent.mkdir(parents=True, exist_ok=True)
            table.astype("<u4").tofile(path)
    reference = MinhashDedupBuckets(str(tmp_path / "signatures"), str(tmp_path / "reference"), config=config)
    ours = BandPairs(tmp_path, config, records_in_memory=records_in_memory)
    for band in range(2):
        reference.run(rank=band, world_size=2)
        ours.run(rank=band, world_size=2)
        expected = (tmp_path / "reference" / f"{band:05d}_00.dups").read_bytes()
        assert len(expected) > 100
        assert (tmp_path / "buckets" / f"{band:05d}_00.dups").read_bytes() == expected
