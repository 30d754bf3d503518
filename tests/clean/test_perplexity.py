"""Perplexity filtering: the character n-gram models are proper distributions and KenLM scores them
as the Python reference does; reference models refuse text of another language; ``megacpt clean``
with a reference model removes random-character, mojibake and shuffled-word documents and keeps
real ones, for any number of workers; bad settings are one error line."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from megacpt.clean import ngram
from megacpt.clean.perplexity import ARPA, META, Cut, load_rule, train_reference_model
from megacpt.cli import main
from megacpt.errors import UserError
from tests.helpers import CORPORA

KLUE = CORPORA / "ko" / "klue_dev.jsonl"
LAWS = CORPORA / "ko" / "konlpy_law_bills.jsonl"


def texts(path: Path) -> list[str]:
    return [json.loads(line)["text"] for line in path.open(encoding="utf-8")]


@pytest.fixture(scope="module")
def ko_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Korean reference model of 500 KLUE documents."""
    out = tmp_path_factory.mktemp("lm") / "ko"
    train_reference_model(texts(KLUE)[:500], "ko", out)
    return out


def test_kenlm_scores_the_arpa_file_as_the_python_reference_does(ko_model: Path) -> None:
    kenlm = pytest.importorskip("kenlm", reason="the clean extra (ufal-kenlm) is not installed")
    fast, reference = ngram.CharModel(ko_model / ARPA), ngram.CharModel(ko_model / ARPA)
    reference.lm = ngram.ArpaModel(ko_model / ARPA)
    assert isinstance(fast.lm, kenlm.Model)
    for text in [*texts(LAWS)[:3], "전혀 본 적 없는 글자 뷁쀍 🙂"]:
        got, want = fast.scores(text), reference.scores(text)
        assert got.bits_per_character == pytest.approx(want.bits_per_character, rel=1e-5)
        assert got.context_ratio == pytest.approx(want.context_ratio, rel=1e-5)
        if want.word_order_gain is None:  # the short line: too few words to judge their order
            assert got.word_order_gain is None and text.startswith("전혀")
        else:
            assert got.word_order_gain == pytest.approx(want.word_order_gain, rel=1e-4, abs=1e-5)


def test_every_context_gives_a_distribution_that_sums_to_one(tmp_path: Path) -> None:
    path = tmp_path / "lm.arpa"
    ngram.write_arpa(texts(KLUE)[:200], 4, path)
    model = ngram.ArpaModel(path)
    vocabulary = [gram[0] for gram in model.probs if len(gram) == 1 and gram[0] != ngram.BOS]
    for history in [(ngram.BOS,), ("대", "한"), ("다", "▁", "그"), ("뷁", "쀍", "🙂")]:
        total = sum(10 ** model._log10(history, token) for token in vocabulary)
        assert total == pytest.approx(1.0, abs=1e-4), history


def test_reordering_keeps_the_words_and_where_the_spaces_are() -> None:
    spaced = "대한민국은 민주공화국이다. 대한민국의 주권은 국민에게 있고,\n모든 권력은 국민으로부터 나온다."
    shuffled, words = ngram.reordered(spaced, seed=3)
    assert words == 10 and shuffled != spaced
    assert sorted(shuffled.split()) == sorted(spaced.split())
    assert [len(line.split()) for line in shuffled.splitlines()] == [6, 4]  # words stay on their line
    unspaced, runs = ngram.reordered("東京都に住んでいる。今日は晴れ", seed=1)
    assert runs == 9 and sorted(unspaced) == sorted("東京都に住んでいる。今日は晴れ")
    assert ngram.reordered(spaced, seed=3) == (shuffled, words)


def test_the_reference_model_records_its_held_out_percentiles(ko_model: Path) -> None:
    meta = json.loads((ko_model / META).read_text(encoding="utf-8"))
    assert (meta["language"], meta["order"], meta["heldout_documents"]) == ("ko", 5, 50)
    for name, values in meta["heldout_percentiles"].items():
        assert len(values) == 101 and values == sorted(values), name
    rule = load_rule("ko", ko_model, (Cut("p50"), Cut("1.0"), None))
    assert rule.max_bits_per_character == meta["heldout_percentiles"]["bits_per_character"][50]
    assert (rule.max_context_ratio, rule.min_word_order_gain) == (1.0, None)


@pytest.mark.parametrize(
    "language, reference, message",
    [
        ("ja", KLUE, "^the reference text is not ja: 0% of its documents are identified as ja, most as ko$"),
        ("xx", KLUE, "^unknown language code 'xx'"),
    ],
)
def test_reference_text_in_another_language_is_refused(
    tmp_path: Path, language: str, reference: Path, message: str
) -> None:
    with pytest.raises(UserError, match=message):
        train_reference_model(texts(reference)[:300], language, tmp_path / "lm")
    assert not (tmp_path / "lm").exists()


def test_too_little_reference_text_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="^40 reference documents are too few"):
        train_reference_model(texts(KLUE)[:40], "ko", tmp_path / "lm")


def paragraphs(size: int = 400) -> list[str]:
    """The laws and bills cut at line ends into documents of about ``size`` characters."""
    out, current = [], ""
    for line in (line for law in texts(LAWS) for line in law.splitlines() if line.strip()):
        current += line + "\n"
        if len(current) >= size:
            out.append(current)
            current = ""
    return out


def garbage_file(path: Path) -> dict[str, str]:
    """Law paragraphs, a third of them turned into random Hangul or shuffled words; id -> kind."""
    rng = random.Random(0)
    kinds = {}
    with path.open("w", encoding="utf-8") as out:
        for i, paragraph in enumerate(paragraphs()):
            kind = ("real", "real", "real", "real", "random", "shuffled")[i % 6]
            if kind == "random":
                paragraph = "".join(c if c.isspace() else chr(rng.randint(0xAC00, 0xD7A3)) for c in paragraph)
            elif kind == "shuffled":
                words = paragraph.split()
                rng.shuffle(words)
                paragraph = " ".join(words)
            kinds[str(i)] = kind
            out.write(json.dumps({"id": str(i), "text": paragraph}, ensure_ascii=False) + "\n")
    return kinds


@pytest.mark.parametrize("workers", ["1", "2"])
def test_clean_removes_random_and_shuffled_text_and_keeps_real_text(
    ko_model: Path, tmp_path: Path, workers: str
) -> None:
    kinds = garbage_file(tmp_path / "in.jsonl")
    out = tmp_path / "out.jsonl"
    argv = ["clean", str(tmp_path / "in.jsonl"), str(out), "--lang", "ko", "--perplexity-model",
            f"ko={ko_model}", "--disable", "symbols_digits", "--no-near-dedup", "--workers", workers]  # fmt: skip
    assert main(argv) == 0
    kept = [json.loads(line)["id"] for line in out.open(encoding="utf-8")]
    report = json.loads(out.with_name("out.jsonl.report.json").read_text(encoding="utf-8"))
    real = [i for i, kind in kinds.items() if kind == "real"]
    assert sum(kinds[i] != "real" for i in kept) == 0  # every garbage document removed
    assert len(kept) >= 0.9 * len(real), report["removed"]  # nine real ones in ten kept
    assert report["removed"]["perplexity"]["count"] == sum(k == "random" for k in kinds.values())
    assert report["removed"]["word_order"]["count"] >= sum(k == "shuffled" for k in kinds.values())
    assert report["config"]["perplexity"][0]["cuts"] == ["none", "1.0", "0.1"]
    if workers == "2":
        one = tmp_path / "one.jsonl"
        assert main([*argv[:2], str(one), *argv[3:-1], "1"]) == 0
        assert one.read_bytes() == out.read_bytes()


def _error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit, match="^2$"):
        main(argv)
    return capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize(
    "extra, line",
    [
        (["--max-context-ratio", "0.9"], "--max-context-ratio applies only with --perplexity-model LANG=DIR"),
        (["--lang", "ja", "--perplexity-model", "ko={model}"],
         "a perplexity model for ko needs ko among the kept languages (--lang): language id chooses each "
         "document's model"),
        (["--lang", "ja", "--perplexity-model", "ja={model}"], "the reference model {model} is a ko model, not ja"),
        (["--lang", "ko", "--perplexity-model", "ko={missing}"],
         "{missing} is not a perplexity reference model (megacpt perplexity-model writes one)"),
        (["--lang", "ko", "--perplexity-model", "ko={model}", "--max-bits-per-char", "p101"],
         "a percentile cut lies between p0 and p100, got 'p101'"),
        (["--lang", "ko", "--perplexity-model", "ko={model}", "--min-word-order-gain", "lots"],
         "a cut is a number or a percentile such as p99, got 'lots'"),
        (["--lang", "ko", "--perplexity-model", "ko={model}", "--max-context-ratio", "ja=0.9"],
         "--max-context-ratio ja=... names a language without --perplexity-model"),
        (["--lang", "ko", "--perplexity-model", "{model}"], "--perplexity-model takes LANG=DIR, got '{model}'"),
    ],
)  # fmt: skip
def test_bad_perplexity_settings_are_one_error_line(
    ko_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], line: str
) -> None:
    fill = {"model": ko_model, "missing": tmp_path / "absent"}
    argv = ["clean", str(LAWS), str(tmp_path / "out.jsonl"), *(item.format(**fill) for item in extra)]
    assert _error(argv, capsys) == "error: " + line.format(**fill)
    assert list(tmp_path.iterdir()) == []


def test_a_model_that_cannot_load_is_one_error_line_not_a_hung_pool(
    ko_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / META).write_bytes((ko_model / META).read_bytes())
    (broken / ARPA).write_text((ko_model / ARPA).read_text(encoding="utf-8")[:5000], encoding="utf-8")
    argv = ["clean", str(LAWS), str(tmp_path / "out.jsonl"), "--lang", "ko", "--perplexity-model",
            f"ko={broken}", "--workers", "2"]  # fmt: skip
    line = _error(argv, capsys)
    assert line.startswith(f"error: cannot load the reference model {broken}: ")
    assert not (tmp_path / "out.jsonl").exists()


def test_a_one_word_line_has_no_order_to_judge() -> None:
    words = "\n".join(
        ["사과", "배", "포도", "딸기", "수박", "참외", "귤", "감", "밤", "대추", "자두", "매실", "앵두"]
    )
    assert ngram.reordered(words, seed=0) == (words, 0)


def test_the_highest_order_is_what_kenlm_is_built_for(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["perplexity-model", "--language", "ko", "--text", str(KLUE), "--output", str(tmp_path / "lm"),
            "--order", "7"]  # fmt: skip
    assert _error(argv, capsys).startswith(
        "error: argument --order: expected an integer at least 2 and at most 6"
    )
