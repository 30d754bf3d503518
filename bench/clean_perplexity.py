"""What the perplexity and word-order filters remove from real text with injected garbage, per language.

    PYTHONPATH=. python bench/clean_perplexity.py [--seeds 0,1,2] [--garbage-share 0.4]

For each language a reference model is trained on one source and judged on held-out text:
- Korean: trained on KLUE; judged on held-out KLUE documents and, apart, on the laws and bills
  (another source and register);
- Japanese: trained on JSTS/JCommonsenseQA; judged on held-out ones and, apart, on JSQuAD's Wikipedia
  paragraphs;
- English: trained on the first 45 WikiText-2 articles; judged on the other 15 (cut into paragraphs).

A share of the judged documents is turned into garbage, one kind in four: words shuffled across the
document, random characters of the language's script, boilerplate (menus, notices), mojibake (UTF-8
read as another encoding). Then every document is judged by the reference model's rule
(``megacpt.clean.perplexity``) with the cuts given, and, apart, by the whole ``megacpt clean``
pipeline with and without the rule. Printed: per language and judged set, the precision and recall
of what was removed (garbage = positive), the share of real documents removed, and the recall per
garbage kind, as markdown.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from megacpt.clean import ngram
from megacpt.clean.config import CleanConfig
from megacpt.clean.perplexity import Cut, PerplexityScorer, load_rule, train_reference_model
from megacpt.clean.pipeline import clean_corpus

CORPORA = Path(__file__).resolve().parents[1] / "examples" / "corpora"
KINDS = ("shuffled", "random", "boilerplate", "mojibake")
ALPHABETS = {
    "ko": [chr(c) for c in range(0xAC00, 0xD7A4)],
    "ja": [chr(c) for c in range(0x3041, 0x3097)] * 3
    + [chr(c) for c in range(0x30A1, 0x30FB)]
    + [chr(c) for c in range(0x4E00, 0x9FA6, 7)],
    "en": list("abcdefghijklmnopqrstuvwxyz"),
}
BOILERPLATE = {
    "ko": ["홈", "회사소개", "이용약관", "개인정보처리방침", "고객센터", "로그인", "회원가입", "장바구니",
           "Copyright © 2024 All rights reserved.", "본 사이트의 모든 콘텐츠는 저작권법의 보호를 받습니다.",
           "이메일무단수집거부", "사이트맵", "공지사항", "자주 묻는 질문", "맨 위로", "더보기", "검색"],
    "ja": ["ホーム", "会社概要", "利用規約", "プライバシーポリシー", "お問い合わせ", "ログイン", "新規登録",
           "カートを見る", "Copyright © 2024 All rights reserved.", "当サイトの内容の無断転載を禁じます。",
           "サイトマップ", "お知らせ", "よくある質問", "ページの先頭へ", "もっと見る", "検索"],
    "en": ["Home", "About us", "Terms of use", "Privacy policy", "Contact", "Log in", "Sign up", "View cart",
           "Copyright © 2024 All rights reserved.", "This site uses cookies to improve your experience.",
           "Sitemap", "News", "FAQ", "Back to top", "Read more", "Search"],
}  # fmt: skip
MOJIBAKE = {"ko": "cp1252", "ja": "shift_jis", "en": "cp1252"}


def docs(path: Path) -> list[str]:
    return [json.loads(line)["text"] for line in path.open(encoding="utf-8")]


def paragraphs(texts: list[str], size: int = 400) -> list[str]:
    """Long documents cut at line ends into documents of about ``size`` characters."""
    out = []
    for text in texts:
        current = ""
        for line in text.splitlines():
            if line.strip():
                current += line + "\n"
            if len(current) >= size:
                out.append(current)
                current = ""
        if len(current) >= size // 4:
            out.append(current)
    return out


@dataclass
class Split:
    language: str
    reference: list[str]  # what the model trains on (less its own held-out share)
    judged: dict[str, list[str]]  # name -> held-out documents


def splits(seed: int) -> list[Split]:
    rng = random.Random(seed)
    klue = docs(CORPORA / "ko" / "klue_dev.jsonl")
    jsts = docs(CORPORA / "ja" / "jsts_jcqa_train.jsonl")
    wiki = docs(CORPORA / "en" / "wikitext2_valid.jsonl")
    for texts in (klue, jsts, wiki):
        rng.shuffle(texts)
    laws = paragraphs(docs(CORPORA / "ko" / "konlpy_law_bills.jsonl"))
    jsquad = docs(CORPORA / "ja" / "jsquad_valid_wiki.jsonl")
    return [
        Split("ko", klue[200:], {"KLUE held out": klue[:200], "laws and bills": laws}),
        Split("ja", jsts[400:], {"JSTS/JCQA held out": jsts[:400], "JSQuAD Wikipedia": jsquad[:400]}),
        Split("en", paragraphs(wiki[15:], 600), {"WikiText-2 held out": paragraphs(wiki[:15], 600)[:400]}),
    ]


def garbage(kind: str, text: str, language: str, rng: random.Random) -> str:
    if kind == "shuffled":
        words = text.split()
        if len(words) * ngram.SPACED < len(text):  # written without spaces: shuffle script runs
            words = [w for w in ngram._WORDS.findall(text) if not w.isspace()]
            rng.shuffle(words)
            return "".join(words)
        rng.shuffle(words)
        return " ".join(words)
    if kind == "random":
        alphabet = ALPHABETS[language]
        return "".join(c if c.isspace() else rng.choice(alphabet) for c in text)
    if kind == "boilerplate":
        items = BOILERPLATE[language]
        return "\n".join(" | ".join(rng.sample(items, rng.randint(3, 6))) for _ in range(rng.randint(4, 10)))
    return text.encode("utf-8").decode(MOJIBAKE[language], errors="replace")


def judged_set(texts: list[str], language: str, share: float, rng: random.Random) -> list[tuple[str, str]]:
    """(kind, text) pairs: ``share`` of them garbage, the kinds in turn; the rest ``real`` (as is a
    document the garbage maker leaves unchanged: mojibake of ASCII English)."""
    out = []
    for i, text in enumerate(texts):
        kind = KINDS[i % len(KINDS)] if rng.random() < share else "real"
        bad = text if kind == "real" else garbage(kind, text, language, rng)
        out.append(("real" if bad == text else kind, bad))
    return out


def scores(removed: list[bool], kinds: list[str]) -> dict[str, float]:
    bad = [k != "real" for k in kinds]
    true_pos = sum(r and b for r, b in zip(removed, bad))
    out = {
        "precision": true_pos / max(1, sum(removed)),
        "recall": true_pos / max(1, sum(bad)),
        "real removed": sum(r and not b for r, b in zip(removed, bad)) / max(1, bad.count(False)),
    }
    for kind in KINDS:
        of_kind = [r for r, k in zip(removed, kinds) if k == kind]
        out[kind] = sum(of_kind) / max(1, len(of_kind))
    return out


def pipeline_removed(items: list[tuple[str, str]], config: CleanConfig, root: Path) -> list[bool]:
    """Which documents the whole ``megacpt clean`` pipeline removes (one worker; dedup off, since the
    garbage is made from real documents)."""
    source, out = root / "in.jsonl", root / "out.jsonl"
    with source.open("w", encoding="utf-8") as f:
        for i, (_, text) in enumerate(items):
            f.write(json.dumps({"id": i, "text": text}, ensure_ascii=False) + "\n")
    clean_corpus(str(source), str(out), config=config, workers=1, overwrite=True)
    kept = {json.loads(line)["id"] for line in out.open(encoding="utf-8")}
    return [i not in kept for i in range(len(items))]


def parse_cuts(text: str) -> tuple[Cut | None, Cut | None, Cut | None]:
    bits, ratio, gain = (None if cut == "none" else Cut(cut) for cut in text.split("/"))
    return bits, ratio, gain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--garbage-share", type=float, default=0.4)
    parser.add_argument(
        "--rules",
        default="p99/none/none,p100/none/none,none/1.0/none,none/none/0.1,none/1.0/0.05,none/1.0/0.1,none/1.0/0.2",
        help="rules to compare, each BITS/RATIO/GAIN cuts (a number, pNN or none)",
    )
    parser.add_argument(
        "--pipeline", default="none/1.0/0.1", help="the rule the whole pipeline runs with (clean's defaults)"
    )
    args = parser.parse_args()
    rows: list[tuple] = []
    for seed in map(int, args.seeds.split(",")):
        rng = random.Random(seed)
        for split in splits(seed):
            with tempfile.TemporaryDirectory() as tmp:
                model_dir = Path(tmp) / f"lm_{split.language}"
                train_reference_model(split.reference, split.language, model_dir, seed=seed)
                for name, texts in split.judged.items():
                    items = judged_set(texts, split.language, args.garbage_share, rng)
                    kinds = [k for k, _ in items]
                    for cuts in args.rules.split(","):
                        scorer = PerplexityScorer((load_rule(split.language, model_dir, parse_cuts(cuts)),))
                        removed = [scorer.failure(text, split.language) is not None for _, text in items]
                        rows.append(
                            (seed, split.language, name, f"rule {cuts}", len(items), scores(removed, kinds))
                        )
                    base = CleanConfig(languages=(split.language,), exact_dedup=False, near_dedup=False)
                    rule = load_rule(split.language, model_dir, parse_cuts(args.pipeline))
                    for label, config in (("clean, no rule", base),
                                          (f"clean + rule {args.pipeline}", replace(base, perplexity=(rule,)))):  # fmt: skip
                        removed = pipeline_removed(items, config, Path(tmp))
                        rows.append((seed, split.language, name, label, len(items), scores(removed, kinds)))
    report(rows)


def report(rows: list[tuple]) -> None:
    """Mean over seeds of every (language, judged set, setting) row, as a markdown table."""
    keys = ["precision", "recall", "real removed", *KINDS]
    grouped: dict[tuple, list[dict[str, float]]] = {}
    sizes: dict[tuple, int] = {}
    for _, language, name, setting, size, values in rows:
        grouped.setdefault((language, name, setting), []).append(values)
        sizes[(language, name, setting)] = size
    print("| language | judged on | filter | docs | " + " | ".join(keys) + " |")
    print("|---|---|---|---|" + "---|" * len(keys))
    for (language, name, setting), runs in grouped.items():
        means = [sum(run[k] for run in runs) / len(runs) for k in keys]
        cells = " | ".join(f"{m:.3f}" for m in means)
        print(f"| {language} | {name} | {setting} | {sizes[(language, name, setting)]} | {cells} |")


if __name__ == "__main__":
    main()
