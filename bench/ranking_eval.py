"""Ranking quality on hand-labelled papers: our ranker next to two baselines, in one run.

Data: ../shared/data/labelled/DataWraith-arxiv-frontpage/ (340 distinct arXiv papers
labelled into 35 topics by one reader). For every topic with at least
MIN_POSITIVES labelled papers, a subscriber profile is written from the topic's
*name*, the way a person would fill in a subscriber file (PROFILES below; they
were written before looking at the labelled papers and were not tuned on them).
The pool is all 340 papers: that topic's positives mixed with everyone else's.

Printed per profile and as the mean: nDCG@10 and precision@5 for
  - ours:      newsletter.rank with the product's defaults (threshold, diversity),
  - substring: count of each keyword as a lower-cased substring of title + abstract,
  - bm25:      plain BM25 over title + abstract, unstemmed words, no phrases, no title weight,
  - fts5:      SQLite FTS5 (porter tokenizer) bm25() with the title weighted 3x, keywords as
               quoted phrases OR-ed together: the store's own index used as the ranker.
Then the mean of ours with web-search BM25 settings (k1 1.2, title x2, full IDF), the
choices' effect; and a 2-fold check: settings picked on half the topics, scored on the other.

Run: python bench/ranking_eval.py [--data DIR]
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import math
import re
import sqlite3
import statistics
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import newsletter.pool as pool_module  # noqa: E402
from newsletter.models import Entry, Subscriber, Topic  # noqa: E402
from newsletter.pool import Pool  # noqa: E402
from newsletter.rank import RankSettings, rank  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "labelled" / "DataWraith-arxiv-frontpage" / "data"
MIN_POSITIVES = 5
K = 10

# Topic name -> keywords a reader would type. "Cool" is a matter of taste, not of words: no profile.
PROFILES: dict[str, list[str]] = {
    "3D": ["3D", "point cloud", "3D reconstruction", "neural radiance fields", "NeRF", "gaussian splatting", "mesh", "depth estimation"],
    "Astronomy": ["astronomy", "astrophysics", "galaxy", "telescope", "stars", "cosmology"],
    "Attention": ["attention", "self-attention", "attention mechanism", "transformer"],
    "Bayesian Optimization": ["bayesian optimization", "gaussian process", "acquisition function", "surrogate model"],
    "Blockchain": ["blockchain", "smart contract", "cryptocurrency", "ethereum", "bitcoin", "decentralized finance"],
    "Computer Vision": ["computer vision", "image classification", "object detection", "segmentation", "visual recognition", "images"],
    "Cryptography": ["cryptography", "encryption", "homomorphic encryption", "zero-knowledge", "cryptographic", "post-quantum"],
    "Datasets": ["dataset", "benchmark", "corpus", "annotated data", "data collection"],
    "Decision Trees": ["decision tree", "random forest", "gradient boosting", "XGBoost", "tree ensemble"],
    "Distributed Systems": ["distributed systems", "consensus", "fault tolerance", "replication", "distributed computing"],
    "Evolutionary Algorithms": ["evolutionary algorithm", "genetic algorithm", "evolution strategies", "genetic programming", "population-based"],
    "Expert Iteration": ["expert iteration", "self-play", "AlphaZero", "monte carlo tree search", "policy improvement"],
    "Federated Learning": ["federated learning", "federated", "clients", "privacy-preserving", "decentralized training"],
    "Finance": ["finance", "financial", "stock", "trading", "portfolio", "market"],
    "Fuzzy Logic": ["fuzzy logic", "fuzzy", "fuzzy sets", "membership function"],
    "GNN": ["graph neural network", "GNN", "message passing", "graph convolutional", "node classification"],
    "Game Theory": ["game theory", "nash equilibrium", "mechanism design", "auction", "strategic"],
    "HPO and AutoML": ["hyperparameter optimization", "AutoML", "neural architecture search", "hyperparameter tuning"],
    "Hardware": ["hardware", "FPGA", "accelerator", "chip", "ASIC", "circuit"],
    "LLMs": ["large language model", "LLM", "language model", "GPT", "instruction tuning", "prompting"],
    "Math": ["theorem", "proof", "mathematics", "mathematical", "lemma"],
    "Medicine": ["medical", "clinical", "patients", "disease", "healthcare", "diagnosis"],
    "Multi-armed Bandit": ["multi-armed bandit", "bandit", "regret", "thompson sampling", "upper confidence bound"],
    "Networks": ["network traffic", "wireless", "routing", "5G", "networking", "communication networks"],
    "Optimizers": ["optimizer", "Adam", "stochastic gradient descent", "learning rate", "convergence"],
    "Pathfinding": ["pathfinding", "path planning", "shortest path", "A* search", "multi-agent path finding"],
    "Quality Diversity": ["quality diversity", "MAP-Elites", "novelty search", "illumination"],
    "Quantum Computing": ["quantum computing", "quantum", "qubit", "quantum circuit"],
    "RAG": ["retrieval-augmented generation", "RAG", "retrieval augmented"],
    "Reinforcement Learning": ["reinforcement learning", "RL", "policy", "reward", "Q-learning"],
    "Robotics": ["robot", "robotics", "manipulation", "locomotion", "robotic"],
    "Skillrating": ["skill rating", "Elo", "TrueSkill", "rating system", "player ranking"],
    "SpikingNN": ["spiking neural network", "spiking", "neuromorphic", "SNN"],
    "T2I": ["text-to-image", "image generation", "diffusion model", "stable diffusion"],
}


def load(data: Path) -> tuple[list[Entry], dict[str, set[str]]]:
    papers: dict[str, Entry] = {}
    labels: dict[str, set[str]] = {}
    for path in sorted((data / "train").glob("*.jsonl")):
        labels[path.stem] = set()
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            key = row.get("url") or row["title"]
            labels[path.stem].add(key)
            papers.setdefault(key, Entry(id=key, title=row["title"], link=key, summary=row.get("abstract", ""), authors=tuple(row.get("authors", []))))
    return list(papers.values()), labels


# --- the three rankers: each returns entry ids, best first ----------------------------------------


def ours(pool: Pool, keywords: list[str]) -> list[str]:
    reader = Subscriber(id="eval", email="eval@example.org", name="Eval", timezone="UTC", send_at=dt.time(7), topics=(Topic("t", tuple(keywords)),))
    return [item.entry.id for item in rank(reader, pool, max_items=K, settings=RankSettings())]


def substring(entries: list[Entry], keywords: list[str]) -> list[str]:
    texts = {e.id: f"{e.title} {e.summary}".lower() for e in entries}
    scores = {i: sum(text.count(k.lower()) for k in keywords) for i, text in texts.items()}
    return [i for i, s in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0])) if s > 0][:K]


def bm25(entries: list[Entry], keywords: list[str]) -> list[str]:
    docs = {e.id: re.findall(r"\w+", f"{e.title} {e.summary}".lower()) for e in entries}
    average = statistics.fmean(len(words) for words in docs.values())
    df = Counter(word for words in docs.values() for word in set(words))
    query = {word for keyword in keywords for word in re.findall(r"\w+", keyword.lower())}
    n = len(docs)
    scores = {}
    for i, words in docs.items():
        counts = Counter(words)
        scores[i] = sum(
            math.log(1 + (n - df[w] + 0.5) / (df[w] + 0.5)) * counts[w] * 2.2 / (counts[w] + 1.2 * (0.25 + 0.75 * len(words) / average))
            for w in query if counts[w]
        )
    return [i for i, s in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0])) if s > 0][:K]


def fts5(db: sqlite3.Connection, keywords: list[str]) -> list[str]:
    query = " OR ".join('"' + k.replace('"', '""') + '"' for k in keywords)
    rows = db.execute("SELECT id FROM papers WHERE papers MATCH ? ORDER BY bm25(papers, 0.0, 3.0, 1.0) LIMIT ?", [query, K])
    return [row[0] for row in rows]


def fts5_index(entries: list[Entry]) -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE papers USING fts5(id UNINDEXED, title, summary, tokenize='porter')")
    db.executemany("INSERT INTO papers VALUES (?, ?, ?)", [(e.id, e.title, e.summary) for e in entries])
    return db


@contextmanager
def bm25_settings(k1: float, title_weight: float, idf_exponent: float) -> Iterator[None]:
    saved = pool_module.K1, pool_module.TITLE_WEIGHT, pool_module.IDF_EXPONENT
    pool_module.K1, pool_module.TITLE_WEIGHT, pool_module.IDF_EXPONENT = k1, title_weight, idf_exponent
    try:
        yield
    finally:
        pool_module.K1, pool_module.TITLE_WEIGHT, pool_module.IDF_EXPONENT = saved


def ours_ndcg(entries: list[Entry], labels: dict[str, set[str]], topics: list[str], settings: tuple[float, float, float]) -> dict[str, float]:
    with bm25_settings(*settings):
        pool = Pool(entries)
        return {topic: ndcg(ours(pool, PROFILES[topic]), labels[topic]) for topic in topics}


def two_fold(entries: list[Entry], labels: dict[str, set[str]], topics: list[str]) -> float:
    """Pick (k1, title weight, IDF exponent) on every other topic, score on the rest; both ways round."""
    grid = list(itertools.product((1.2, 2.0), (1.0, 2.0, 3.0), (0.0, 0.5, 1.0)))
    results = {settings: ours_ndcg(entries, labels, topics, settings) for settings in grid}
    held_out = []
    for train, test in ((topics[0::2], topics[1::2]), (topics[1::2], topics[0::2])):
        best = max(grid, key=lambda settings: statistics.fmean(results[settings][t] for t in train))
        held_out += [results[best][t] for t in test]
    return statistics.fmean(held_out)


# --- metrics -------------------------------------------------------------------------------------


def ndcg(ranked: list[str], relevant: set[str], k: int = K) -> float:
    dcg = sum(1 / math.log2(position + 2) for position, i in enumerate(ranked[:k]) if i in relevant)
    ideal = sum(1 / math.log2(position + 2) for position in range(min(k, len(relevant))))
    return dcg / ideal if ideal else 0.0


def precision(ranked: list[str], relevant: set[str], k: int = 5) -> float:
    return sum(1 for i in ranked[:k] if i in relevant) / k


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    entries, labels = load(args.data)
    pool = Pool(entries)
    index = fts5_index(entries)
    rankers: dict[str, Callable[[list[str]], list[str]]] = {
        "ours": lambda kws: ours(pool, kws),
        "substring": lambda kws: substring(entries, kws),
        "bm25": lambda kws: bm25(entries, kws),
        "fts5": lambda kws: fts5(index, kws),
    }
    topics = [t for t in sorted(labels) if t in PROFILES and len(labels[t]) >= MIN_POSITIVES]
    print(f"{len(entries)} labelled papers; {len(topics)} topics with >= {MIN_POSITIVES} positives; nDCG@{K} / P@5")
    print(f"{'profile':<26}{'pos':>4}  " + "  ".join(f"{name:>16}" for name in rankers))
    totals: dict[str, list[tuple[float, float]]] = {name: [] for name in rankers}
    for topic in topics:
        cells = []
        for name, ranker in rankers.items():
            ranked = ranker(PROFILES[topic])
            result = (ndcg(ranked, labels[topic]), precision(ranked, labels[topic]))
            totals[name].append(result)
            cells.append(f"{result[0]:7.3f} / {result[1]:5.2f}")
        print(f"{topic:<26}{len(labels[topic]):>4}  " + "  ".join(f"{cell:>16}" for cell in cells))
    means = {name: (statistics.fmean(r[0] for r in rows), statistics.fmean(r[1] for r in rows)) for name, rows in totals.items()}
    print(f"{'MEAN':<26}{'':>4}  " + "  ".join(f"{m[0]:7.3f} / {m[1]:5.2f}" for m in means.values()))
    for baseline in ("substring", "bm25", "fts5"):
        print(f"ours / {baseline}: nDCG@10 x{means['ours'][0] / means[baseline][0]:.2f}, P@5 x{means['ours'][1] / means[baseline][1]:.2f}")
    web = statistics.fmean(ours_ndcg(entries, labels, topics, (1.2, 2.0, 1.0)).values())
    print(f"ours with web-search BM25 settings (k1 1.2, title x2, full IDF): nDCG@10 {web:.3f}")
    print(f"ours, settings chosen on half the topics and scored on the other half (2-fold): nDCG@10 {two_fold(entries, labels, topics):.3f}")


if __name__ == "__main__":
    main()
