"""Which words become ExpertLens concepts (expertlens.max_concepts): a choice that keeps every
human-judgment set scorable.

Concepts are the words of the human pairs with enough sentences. With a cap on their number,
the plain rule (keep the words covering the most pairs in total) let the biggest pair set take
all the slots (WordSim/SimLex covered pairs 2/74 at 60 concepts); here words are peeled off the
union graph while balancing the pairs each set keeps, then improved by swaps (_peel, _swap).
"""

from __future__ import annotations

from collections import defaultdict

import pandas as pd


def _edges(pairs: list[pd.DataFrame]) -> set[tuple[str, str]]:
    """Distinct unordered word pairs (lowercased, self-pairs left out) over all pair tables."""
    edges = set()
    for df in pairs:
        for a, b in zip(df["word_a"].astype(str).str.strip().str.lower(),
                        df["word_b"].astype(str).str.strip().str.lower()):
            if a != b:
                edges.add((min(a, b), max(a, b)))
    return edges


def _peel(adjs: list[dict[str, set[str]]], adj: dict[str, set[str]], max_concepts: int) -> set[str]:
    """Drop, one at a time, the word whose removal hurts the worst-covered pair set least, until
    max_concepts remain. `adjs`: one eligible pair graph per human-judgment set; `adj`: their union.

    "Hurts least" is leximin over the sets: the word chosen is the one that leaves the sorted
    vector of per-set covered pairs (smallest first) lexicographically largest, i.e. it maximises
    the minimum over sets, then the next smallest, ...; ties go to the word with the fewest
    distinct pairs among the words still in (total coverage), then to the alphabetically last (so
    the result is deterministic). With a single set this is plain peeling by degree.

    Greedy peeling instead of a one-shot degree ranking: a word whose partners are all dropped is
    worth nothing, and peeling sees that. Leximin instead of total coverage: otherwise the largest
    set takes every slot. On the embedded default (WordSim-353 + SimLex-999, 20 mined positives,
    60 concepts) total-coverage peeling kept 2 WordSim and 74 SimLex pairs; leximin keeps 29 and
    29 (57 distinct pairs). Peeling is myopic (it cannot take back a word it dropped), so _swap
    then polishes the result. A set with no eligible pair never constrains the choice (its
    coverage is 0 whatever is kept).
    """
    alive = set(adj)
    degree = {w: len(adj[w]) for w in adj}  # distinct pairs with the words still in
    set_degree = [{w: len(a.get(w, ())) for w in adj} for a in adjs]
    covered = [sum(d.values()) // 2 for d in set_degree]  # pairs of each set with both words in
    rank = {w: i for i, w in enumerate(sorted(adj))}

    def cost(v):  # smaller is better: -(sorted coverage left), then degree, then late in the alphabet
        left = sorted(c - d[v] for c, d in zip(covered, set_degree))
        return tuple(-x for x in left), degree[v], -rank[v]

    while len(alive) > max_concepts:
        w = min(alive, key=cost)
        alive.discard(w)
        for v in adj[w] & alive:
            degree[v] -= 1
        for i, (a, d) in enumerate(zip(adjs, set_degree)):
            covered[i] -= d[w]
            for v in a.get(w, set()) & alive:
                d[v] -= 1
    return _swap(adjs, adj, alive)


def _swap(adjs: list[dict[str, set[str]]], adj: dict[str, set[str]], keep: set[str]) -> set[str]:
    """Best single swaps (one kept word out, one dropped word in) while one improves the
    objective of _peel: (per-set covered pairs sorted smallest first, distinct pairs covered),
    compared lexicographically. Ties: the alphabetically first (out, in). Every swap strictly
    improves a bounded objective, so this ends; it usually ends at once (the embedded default:
    no swap), but it repairs what peeling cannot see, e.g. keeping a word whose pairs only count
    once a dropped partner comes back."""
    keep = set(keep)

    def partners(g, w):  # w's partners among the kept words
        return len(g.get(w, set()) & keep)

    while True:
        cov = [sum(partners(a, w) for w in keep) // 2 for a in adjs]
        total = sum(partners(adj, w) for w in keep) // 2
        best, move = (tuple(sorted(cov)), total), None
        outs = sorted(keep)
        ins = sorted({v for w in keep for v in adj[w]} - keep)  # a word with no kept partner adds nothing
        for x in outs:
            lose = [partners(a, x) for a in adjs]
            for y in ins:
                new = [c - lx + partners(a, y) - (x in a.get(y, ())) for c, lx, a in zip(cov, lose, adjs)]
                score = (tuple(sorted(new)), total - partners(adj, x) + partners(adj, y) - (x in adj[y]))
                if score > best:
                    best, move = score, (x, y)
        if move is None:
            return keep
        keep = (keep - {move[0]}) | {move[1]}


def choose_concepts(pairs: list[pd.DataFrame], counts: dict[str, int], min_positive: int,
                    max_concepts: int | None) -> pd.DataFrame:
    """Which pair words become concepts; one row per candidate word, kept or not, with a reason.

    Columns: concept (str, sorted), n_available (int64: sentences mentioning it), kept (bool),
    reason (str). A word with fewer than min_positive sentences is dropped. If more than
    max_concepts remain, the kept set is chosen so that every pair table (human-judgment set)
    keeps many pairs whose both words are kept (only those can be scored against humans): the
    worst-covered table first, then total coverage (see _peel). "covers k pairs" in a reason
    counts the word's distinct pairs (over all tables) with the kept concepts. max_concepts None
    or 0 means no cap.
    """
    edges = _edges(pairs)
    words = sorted({w for e in edges for w in e})
    n = {w: int(counts.get(w, 0)) for w in words}
    adj = {w: set() for w in words if n[w] >= min_positive}  # the eligible pair graph
    for a, b in edges:
        if a in adj and b in adj:
            adj[a].add(b)
            adj[b].add(a)
    adjs = []  # the same graph per pair table
    for df in pairs:
        g = defaultdict(set)
        for a, b in _edges([df]):
            if a in adj and b in adj:
                g[a].add(b)
                g[b].add(a)
        adjs.append(g)
    keep = _peel(adjs, adj, max_concepts) if max_concepts else set(adj)
    rows = []
    for w in words:
        covers = len(adj.get(w, set()) & keep)
        if w not in adj:
            rows.append((w, n[w], False, f"only {n[w]} sentences (< min_positive {min_positive})"))
        elif w in keep:
            rows.append((w, n[w], True, f"kept (covers {covers} pairs)"))
        else:
            rows.append((w, n[w], False, f"over max_concepts {max_concepts} (covers {covers} pairs)"))
    df = pd.DataFrame(rows, columns=["concept", "n_available", "kept", "reason"])
    return df.astype({"concept": object, "n_available": "int64", "kept": bool})


def pairs_covered(pairs: list[pd.DataFrame], concepts) -> int:
    """Distinct unordered pairs whose both words are in `concepts` (what alignment can use)."""
    concepts = {c.lower() for c in concepts}
    return sum(a in concepts and b in concepts for a, b in _edges(pairs))
