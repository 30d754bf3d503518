"""How far can new output rows fitted to the base model's beliefs take a resized model?

Issue 22, item 3. A new token stands for base pieces ``p1 … pk``; the base gives that sequence the
probability ``P(p1) · P(p2 | p1) · …``. This bench fits the new output rows (the head untied; input
rows stay ``subword_mean`` + the frequency calibration) so that the resized model's next-token
distribution matches the base's at every position of the expansion's training text, not only
where a token occurs:

- **Targets** (``frontier``): at an aligned position the base's distribution over its next piece
  is pushed onto the expanded vocabulary through a trie of every token's base pieces. A new token
  gets the probability of its piece sequence (its own mass: continuations no longer token extends);
  a piece that starts no new token keeps its base probability. The distribution after an
  off-path prefix is computed by *extension forwards*: one batched forward of the prefix's last
  piece over the window's KV cache with a tree-shaped attention mask, for every prefix of mass
  above ``--tau``, up to ``--depth`` pieces. Subtrees left unexpanded are one lumped target (their
  tokens' total probability). Along the text itself teacher forcing gives every depth.
- **Fit**: Adam on the new output rows, cross-entropy against those targets on ``--windows``
  windows of Korean and Japanese training text (and English windows, whose targets are the base's
  own distribution), from the calibrated rows.
- **Reported**: bits per byte on the held-out text from other sources (``expansion_split.Split``:
  the ratio to the base and the class split) after each of ``--eval-at`` steps, for the final
  states of the resized model (``--states resized``, what a real model gets) or of the base at the
  aligned positions (``--states base``: the output side alone, as if the input rows were perfect).

``--save-hf DIR`` writes the fitted model (untied) after the last step, so that the trainer can
show whether the gain survives continual pretraining (``bench/results/expansion_output_fit.md``).

    PYTHONPATH=. python bench/expansion_output_fit.py --tokenizer runs/quickstart/tokenizer --eval-at 5,25,50
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from expansion_split import CLASSES, Split, build
from transformers import DynamicCache

from megacpt.convert import distill
from megacpt.convert.calibrate import calibrate
from megacpt.convert.reference_model import fetch_smollm2
from megacpt.convert.resize import expansion_from_tokenizers, new_rows
from megacpt.recipes.corpora import LANGS, heldout_documents, training_documents

Dist = Callable[[tuple[int, ...]], "torch.Tensor | None"]  # piece prefix -> base log-probs after it


@dataclass
class Node:
    """A prefix of base pieces: its tokens' rank range, the token it is (or -1), its next pieces."""

    lo: int
    hi: int
    token: int = -1
    children: set[int] = field(default_factory=set)


class PieceTrie:
    """Every token of the expanded vocabulary by its base pieces. Tokens are numbered in the
    trie's depth-first order (``order``), so that each node's subtree is one range ``[lo, hi)``."""

    def __init__(self, old: int, pieces: Sequence[Sequence[int]]) -> None:
        seqs = [(o,) for o in range(old)] + [tuple(p) for p in pieces]
        self.order = torch.tensor(sorted(range(len(seqs)), key=lambda i: seqs[i]))
        self.rank = torch.empty_like(self.order)
        self.rank[self.order] = torch.arange(len(seqs))
        self.nodes: dict[tuple[int, ...], Node] = {}
        for r, token in enumerate(self.order.tolist()):
            seq = seqs[token]
            for depth in range(1, len(seq) + 1):
                node = self.nodes.setdefault(seq[:depth], Node(r, r + 1))
                node.hi = r + 1
                if depth < len(seq):
                    node.children.add(seq[depth])
            self.nodes[seq].token = token
        self.first = torch.tensor(sorted({s[0] for s in seqs[old:]}))
        self.starts_new = torch.zeros(old, dtype=torch.bool)
        self.starts_new[self.first] = True

    def expandable(self, prefix: tuple[int, ...]) -> bool:
        node = self.nodes.get(prefix)
        return node is not None and bool(node.children)

    def targets(
        self, dist: Dist, prune: float = 1e-6
    ) -> tuple[dict[int, float], list[tuple[int, int, float]]]:
        """(own mass per token, lumped ranges ``(lo, hi, mass)``) of the pieces that start new
        tokens; the others keep their base probability (the caller's dense part)."""
        own: dict[int, float] = {}
        ranges: list[tuple[int, int, float]] = []
        root = dist(()).exp()
        for piece, mass in zip(self.first.tolist(), root[self.first].tolist(), strict=True):
            if mass >= prune:
                self._walk((piece,), mass, piece, dist, own, ranges, prune)
        return own, ranges

    def _walk(self, prefix, mass, owner, dist, own, ranges, prune) -> None:  # type: ignore[no-untyped-def]
        node = self.nodes[prefix]
        owner = node.token if node.token >= 0 else owner  # the token emitted if nothing longer matches
        if not node.children:
            own[owner] = own.get(owner, 0.0) + mass
            return
        logp = dist(prefix)
        if logp is None:
            ranges.append((node.lo, node.hi, mass))
            return
        children = sorted(node.children)
        probs = logp[children].exp()
        for piece, p in zip(children, probs.tolist(), strict=True):
            if mass * p >= prune:
                self._walk((*prefix, piece), mass * p, owner, dist, own, ranges, prune)
        own[owner] = own.get(owner, 0.0) + mass * max(0.0, 1.0 - float(probs.sum()))


@torch.no_grad()
def window_beliefs(
    model: Any, head: torch.Tensor, ids: list[int], at: list[int], trie: PieceTrie, tau: float, depth: int
) -> tuple[torch.Tensor, Callable[[int, tuple[int, ...]], torch.Tensor | None]]:
    """Teacher-forced base log-probs over a window ``[n, V]`` and ``known(k, prefix)``: the base's
    log-probs after position ``k`` followed by ``prefix`` (on the text, or from extension forwards
    of every prefix of mass above ``tau``, ``depth`` pieces deep), or None."""
    cache = DynamicCache()
    states = model.model(input_ids=torch.tensor([ids]), past_key_values=cache, use_cache=True)
    logp = torch.log_softmax(states.last_hidden_state[0].float() @ head.T, -1)
    extended: dict[tuple[int, tuple[int, ...]], torch.Tensor] = {}

    def known(k: int, prefix: tuple[int, ...]) -> torch.Tensor | None:
        if not prefix:
            return logp[k]
        if k + len(prefix) < len(ids) and tuple(ids[k + 1 : k + 1 + len(prefix)]) == prefix:
            return logp[k + len(prefix)]
        return extended.get((k, prefix))

    # (k, prefix, mass, cache slots of the prefix's earlier pieces)
    level = [
        (k, (p,), m, [])
        for k in at
        for p, m in zip(trie.first.tolist(), logp[k, trie.first].exp().tolist(), strict=True)
        if m > tau and trie.expandable((p,)) and known(k, (p,)) is None
    ]
    cached = len(ids)
    for d in range(depth):
        if not level:
            break
        n = len(level)
        mask = torch.zeros(1, 1, n, cached + n, dtype=torch.bool)  # tree attention over the cache
        for i, (k, _, _, slots) in enumerate(level):
            mask[0, 0, i, : k + 1] = True
            mask[0, 0, i, [*slots, cached + i]] = True
        tokens = torch.tensor([[prefix[-1] for _, prefix, _, _ in level]])
        positions = torch.tensor([[k + len(prefix) for k, prefix, _, _ in level]])
        out = model.model(
            input_ids=tokens,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
        )
        ext = torch.log_softmax(out.last_hidden_state[0].float() @ head.T, -1)
        deeper = []
        for i, (k, prefix, mass, slots) in enumerate(level):
            extended[(k, prefix)] = ext[i]
            if d + 1 == depth:
                continue
            for piece in trie.nodes[prefix].children:
                child, m = (*prefix, piece), mass * float(ext[i, piece].exp())
                if m > tau and trie.expandable(child) and known(k, child) is None:
                    deeper.append((k, child, m, [*slots, cached + i]))
        cached += n
        level = deeper
    return logp, known


@dataclass
class Contexts:
    """Per aligned position: the base's and the resized model's final states, and the targets."""

    base_states: torch.Tensor  # [c, h]
    states: torch.Tensor  # [c, h]
    own: torch.Tensor  # [m, 3]: context, rank of the token, mass
    ranges: torch.Tensor  # [r, 4]: context, lo, hi, mass


def english_window(text: str, base_tok: Any, eod: int, limit: int) -> distill.Window:
    ids = [eod, *base_tok(text, add_special_tokens=False)["input_ids"][:limit]]
    return distill.Window(ids, ids, [(j, j) for j in range(len(ids))])


def contexts(
    model: Any, head: torch.Tensor, rows: torch.Tensor, windows: Sequence[distill.Window], trie: PieceTrie,
    old: int, tau: float, depth: int,
) -> Contexts:  # fmt: skip
    """The targets and states of every aligned position that has a next token in its window."""
    base_states, states, own, ranges = [], [], [], []
    table = model.get_input_embeddings().weight
    for w in windows:
        pairs = [(i, k) for i, k in w.pairs if i < len(w.new_ids) - 1]
        _, known = window_beliefs(model, head, w.base_ids, [k for _, k in pairs], trie, tau, depth)
        with torch.no_grad():
            hb = model.model(input_ids=torch.tensor([w.base_ids])).last_hidden_state[0].float()
            x = torch.tensor(w.new_ids)
            emb = torch.where((x >= old)[:, None], rows[(x - old).clamp(min=0)], table[x.clamp(max=old - 1)])
            he = model.model(inputs_embeds=emb[None]).last_hidden_state[0].float()
        for i, k in pairs:
            c = len(states)
            mine, lumped = trie.targets(lambda prefix, k=k, known=known: known(k, prefix))
            own += [(c, int(trie.rank[t]), m) for t, m in mine.items()]
            ranges += [(c, lo, hi, m) for lo, hi, m in lumped]
            base_states.append(hb[k])
            states.append(he[i])
    return Contexts(
        torch.stack(base_states), torch.stack(states),
        torch.tensor(own, dtype=torch.float64), torch.tensor(ranges, dtype=torch.float64),
    )  # fmt: skip


def frontier_loss(
    states: torch.Tensor, base_states: torch.Tensor, picked: torch.Tensor, ctx: Contexts,
    head: torch.Tensor, new_out: torch.Tensor, trie: PieceTrie,
) -> torch.Tensor:  # fmt: skip
    """Mean cross-entropy of the model's next-token distribution against the targets."""
    with torch.no_grad():
        dense = torch.softmax(base_states @ head.T, -1) * (~trie.starts_new)
    logp = torch.log_softmax(torch.cat([states @ head.T, states @ new_out.T], -1), -1)
    loss = -(dense * logp[:, : head.shape[0]]).sum()
    by_rank = logp[:, trie.order]
    cumulative = torch.nn.functional.pad(by_rank.exp().double().cumsum(-1), (1, 0))
    slot = torch.full((len(ctx.states),), -1, dtype=torch.long)
    slot[picked] = torch.arange(len(picked))
    own = ctx.own[slot[ctx.own[:, 0].long()] >= 0]
    loss = loss - (own[:, 2] * by_rank[slot[own[:, 0].long()], own[:, 1].long()].double()).sum().float()
    lumped = ctx.ranges[slot[ctx.ranges[:, 0].long()] >= 0]
    rows = slot[lumped[:, 0].long()]
    mass = cumulative[rows, lumped[:, 2].long()] - cumulative[rows, lumped[:, 1].long()]
    loss = loss - (lumped[:, 3] * mass.clamp(min=1e-30).log()).sum().float()
    return loss / len(picked)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tokenizer", type=Path, required=True, help="an expanded SmolLM2 tokenizer")
    p.add_argument("--windows", type=int, default=100, help="Korean + Japanese training windows")
    p.add_argument("--english-windows", type=int, default=40)
    p.add_argument("--window", type=int, default=64, help="expanded tokens per window")
    p.add_argument("--tau", type=float, default=0.01, help="extend prefixes of at least this mass")
    p.add_argument("--depth", type=int, default=3, help="pieces of extension")
    p.add_argument("--eval-at", default="5,25,50", help="steps after which to measure")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch", type=int, default=512, help="contexts per step")
    p.add_argument("--states", choices=("resized", "base"), default="resized")
    p.add_argument("--docs", type=int, default=12, help="held-out documents per language")
    p.add_argument("--save-hf", type=Path, help="write the fitted model (untied) here")
    args = p.parse_args()
    from transformers import AutoTokenizer

    torch.manual_seed(0)
    start = time.perf_counter()
    base_dir = fetch_smollm2()
    base_tok, tok = (
        AutoTokenizer.from_pretrained(str(base_dir)),
        AutoTokenizer.from_pretrained(str(args.tokenizer)),
    )
    expansion = expansion_from_tokenizers(base_dir, args.tokenizer)
    old, eod = expansion.old_size, int(base_tok.eos_token_id)
    frozen = distill.hf_base(str(base_dir))
    model, head = frozen.model, frozen.output  # type: ignore[attr-defined]
    hidden = lambda t: model.model(input_ids=t).last_hidden_state.float()  # noqa: E731
    with torch.no_grad():
        calibration = calibrate(
            expansion.pieces, expansion.frequencies or [1] * (expansion.new_size - old), hidden, 2048
        )
    rows = new_rows("subword_mean", frozen.embedding, expansion.pieces) + calibration.shift()
    trie = PieceTrie(old, expansion.pieces)

    windows: list[distill.Window] = []
    for lang, count in (("ko", args.windows // 2), ("ja", args.windows - args.windows // 2)):
        texts = training_documents(lang)
        cfg = distill.DistillConfig(tokens=count * args.window, window=args.window, seed=0)
        windows += distill.make_windows(texts, base_tok, tok, old, eod, cfg)[:count]
    english = training_documents("en")
    random.Random(0).shuffle(english)
    windows += [english_window(t, base_tok, eod, args.window) for t in english[: args.english_windows]]
    ctx = contexts(model, head, rows, windows, trie, old, args.tau, args.depth)
    built = time.perf_counter() - start
    print(
        f"{expansion.new_size - old} new tokens; {len(windows)} windows, {len(ctx.states)} contexts, "
        f"{len(ctx.own)} own and {len(ctx.ranges)} lumped targets; {built:.0f} s",
        flush=True,
    )
    splits = {
        lang: Split(model, base_tok, tok, old, eod, heldout_documents(lang)[: args.docs], 400)
        for lang in LANGS
    }

    def report(name: str, out_rows: torch.Tensor) -> None:
        net = build(base_dir, head, rows, out_rows)
        cells = []
        for lang in LANGS:
            r = splits[lang].of(net)
            cells.append(
                f"{lang} {r['model'] / r['base']:.3f} (" + " ".join(f"{r[c]:+.3f}" for c in CLASSES[:3]) + ")"
            )
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)

    print("| rows | " + " | ".join(f"{lang} ratio (new after later)" for lang in LANGS) + " |")
    report("calibrated (untied, step 0)", rows)
    fitted = rows.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([fitted], lr=args.lr)
    states = ctx.states if args.states == "resized" else ctx.base_states
    eval_at = sorted(int(s) for s in args.eval_at.split(","))
    for step in range(1, eval_at[-1] + 1):
        picked = torch.randperm(len(states))[: args.batch]
        loss = frontier_loss(states[picked], ctx.base_states[picked], picked, ctx, head, fitted, trie)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step in eval_at:
            report(
                f"fitted, {step} steps (loss {loss.item():.3f}, {time.perf_counter() - start:.0f} s)",
                fitted.detach(),
            )
    if args.save_hf:
        net = build(base_dir, head, rows, fitted.detach())
        net.config.vocab_size = expansion.new_size
        net.save_pretrained(str(args.save_hf))
        tok.save_pretrained(str(args.save_hf))
        print(f"wrote {args.save_hf}")


if __name__ == "__main__":
    main()
