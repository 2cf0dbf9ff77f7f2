"""Reranking benchmark: speed (CPU) and quality (Cranfield).

    python benchmarks/rerank.py                 # both tables
    python benchmarks/rerank.py --speed         # p50/p99 of reranking 10/20/50 candidates, search end to end
    python benchmarks/rerank.py --quality       # NDCG@10 on held-out Cranfield queries

Speed: the cross-encoder (MiniLM-L6, the served one) scores (query, abstract) pairs of
Cranfield at the served max length, on ``--threads`` torch threads; fp32 as served, and
int8 dynamic quantisation (``torch.ao.quantization.quantize_dynamic`` of the Linear layers)
with its score difference to fp32. Search end to end is ``SearchService.search_sync``, the
API's own code (query embedding, FAISS, bm25s, RRF, reranking of the top 20), with the first
stage alone as the baseline of the same run.

Quality: every query's first-stage list (RRF of the bi-encoder and BM25) is shown; the
feedback of users is simulated on it from the judgments (seeded; a judged-relevant document
is liked, the others disliked, each shown document with probability ``--feedback-rate``);
``trainer.reranker`` builds the pairs (the same code as ``streamrec train-reranker``) of 80%
of the queries (split by query) and fine-tunes the cross-encoder from the packaged MiniLM;
NDCG@10 (gains 5 - grade over every judged document) is reported on the other 20% for BM25,
the bi-encoder, the fused first stage, the untuned and the fine-tuned cross-encoder
reranking the fused top 20.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = ROOT.parent / "shared" / "data" / "cranfield"


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs) * 1000.0, q))


def load_index(docs: dict[str, str], cache: Path | None):
    from trainer.text_index import build_text_index, load_text_index
    from trainer.text_models import load_bi_encoder

    encoder = load_bi_encoder()
    folder = cache / "cranfield_index" if cache else Path(tempfile.mkdtemp()) / "cranfield_index"
    t0 = time.perf_counter()
    if not (folder / "COMPLETE").exists():
        build_text_index(docs, folder, encoder)
        print(f"indexed {len(docs)} abstracts in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    index = load_text_index(folder)
    index.encoder = encoder
    return index


# --- speed ------------------------------------------------------------------------------------
def time_calls(fn, repeats: int) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def speed(args, cran, index) -> None:
    import torch

    from inference.search import Loaded, SearchQuery, SearchService
    from schemas.settings import Settings
    from trainer.text_models import load_cross_encoder

    settings = Settings(rerank_top_n=20)
    ce = load_cross_encoder(Path(args.reranker) / "model" if args.reranker else None, max_length=settings.rerank_max_length)
    qids = list(cran.queries)[: args.repeats]
    first, _ = index.first_stage(cran.queries[qids[0]], 100)
    docs = [index.text_of(i) for i, _ in first]
    rows = []

    def bench(model, label: str) -> dict[int, np.ndarray]:
        out = {}
        for n in (10, 20, 50):
            samples = []
            for q in qids:
                pairs = [(cran.queries[q], d) for d in docs[:n]]
                samples += time_calls(lambda: model.predict(pairs, batch_size=n, show_progress_bar=False), 1)
            rows.append((label, n, pct(samples, 50), pct(samples, 99)))
            out[n] = np.asarray(model.predict([(cran.queries[qids[0]], d) for d in docs[:n]], batch_size=n,
                                              show_progress_bar=False))
        return out

    fp32 = bench(ce, "torch fp32")
    int8_model = torch.ao.quantization.quantize_dynamic(load_cross_encoder(
        Path(args.reranker) / "model" if args.reranker else None, max_length=settings.rerank_max_length),
        {torch.nn.Linear}, dtype=torch.qint8)
    int8 = bench(int8_model, "torch int8 (dynamic)")
    short = [d.split(". ")[0] for d in docs]  # titles only: the length of a catalogue's item texts

    def bench_short(model, label):
        samples = []
        for q in qids:
            pairs = [(cran.queries[q], d) for d in short[:20]]
            samples += time_calls(lambda: model.predict(pairs, batch_size=20, show_progress_bar=False), 1)
        rows.append((label, 20, pct(samples, 50), pct(samples, 99)))

    bench_short(ce, "torch fp32, titles")
    bench_short(int8_model, "torch int8, titles")

    # search end to end: the API's code path, first stage alone as the baseline
    svc = SearchService(settings)
    loaded = Loaded(index=index, cross_encoder=ce)
    for label, rerank in (("search, first stage only", False), ("search + rerank top 20", True)):
        samples = []
        for q in qids:
            sq = SearchQuery(cran.queries[q], k=10, use_reranker=rerank)
            samples += time_calls(lambda: svc.search_sync(loaded, sq), 1)
        rows.append((label, 20 if rerank else 0, pct(samples, 50), pct(samples, 99)))

    print(f"\nspeed: {torch.get_num_threads()} torch threads, {len(qids)} queries x 1 call each "
          f"(p99 of {len(qids)} samples), max_length {settings.rerank_max_length}, Cranfield abstracts "
          f"(~200 tokens) unless 'titles'")
    print(f"{'what':<28} {'candidates':>10} {'p50 ms':>9} {'p99 ms':>9}")
    for label, n, p50, p99 in rows:
        print(f"{label:<28} {n:>10} {p50:>9.1f} {p99:>9.1f}")
    for n in (10, 20, 50):
        diff = np.abs(fp32[n] - int8[n])
        same_top = len(set(np.argsort(-fp32[n])[:5]) & set(np.argsort(-int8[n])[:5]))
        print(f"int8 vs fp32, {n} candidates: max |score diff| {diff.max():.4f}, top-5 overlap {same_top}/5")


# --- quality ----------------------------------------------------------------------------------
def ndcg_of(order: list[str], gains: dict[str, float], k: int = 10) -> float:
    from ranking.rerank import ndcg_at_k

    return ndcg_at_k([gains.get(d, 0.0) for d in order], k, all_gains=list(gains.values()))


def quality(args, cran, index) -> dict:
    import pandas as pd
    import torch

    from ranking.rerank import apply_reranker, rrf
    from trainer.reranker.cranfield import simulate_feedback
    from trainer.reranker.finetune import FineTuneParams, fine_tune
    from trainer.reranker.pairs import build_pairs, split_by_query
    from trainer.text_models import load_cross_encoder

    torch.manual_seed(args.seed)
    qids = [q for q in cran.queries if cran.gains.get(q)][: args.limit_queries or None]
    lists = {}
    for q in qids:
        text = cran.queries[q]
        dense = [i for i, _ in index.dense(index.embed_query(text), 100)]
        bm25 = [i for i, _ in index.lexical(text, 100)]
        fused = rrf({"dense": dense, "bm25": bm25})
        lists[q] = {"bm25": bm25, "dense": dense, "fused": fused}
    frame = pd.DataFrame({"query": [cran.queries[q] for q in qids], "qid": qids})
    train_q, test_q = split_by_query(frame, 0.2, seed=args.seed)
    train_ids, test_ids = train_q["qid"].tolist(), test_q["qid"].tolist()
    shown = {q: [i for i, _ in lists[q]["fused"][: args.top_n]] for q in train_ids}
    events = simulate_feedback(shown, cran.queries, cran.gains, seed=args.seed, feedback_rate=args.feedback_rate)
    pairs = build_pairs(events, cran.docs)
    print(f"\nquality: {len(train_ids)} training queries ({len(pairs)} simulated feedbacks on their fused top "
          f"{args.top_n}: {int((pairs['label'] > 0).sum())} likes), {len(test_ids)} held-out queries",
          file=sys.stderr)

    def scores_of(model, qs: list[str]) -> dict[str, dict[str, float]]:
        out = {}
        for q in qs:
            top = [i for i, _ in lists[q]["fused"][: args.top_n]]
            s = model.predict([(cran.queries[q], cran.docs[d]) for d in top], batch_size=32, show_progress_bar=False)
            out[q] = dict(zip(top, map(float, s)))
        return out

    def rerank_ndcg(scores: dict[str, dict[str, float]], weight: float = 1.0) -> float:
        return float(np.mean([ndcg_of([r.item_id for r in apply_reranker(lists[q]["fused"], scores[q], args.top_n, weight)],
                                      cran.gains[q]) for q in scores]))

    table = {}
    for name in ("bm25", "dense", "fused"):
        table[name] = float(np.mean([ndcg_of([i if isinstance(i, str) else i[0] for i in lists[q][name]],
                                             cran.gains[q]) for q in test_ids]))
    ce = load_cross_encoder(None, max_length=args.max_length)
    t0 = time.perf_counter()
    table["cross-encoder, untuned"] = rerank_ndcg(scores_of(ce, test_ids))
    params = FineTuneParams(epochs=args.epochs, batch_size=16, learning_rate=args.lr, seed=args.seed)
    t1 = time.perf_counter()
    fine_tune(ce, pairs, params, progress=args.progress)
    train_s = time.perf_counter() - t1
    tuned = scores_of(ce, test_ids)
    table["cross-encoder, fine-tuned"] = rerank_ndcg(tuned)
    w = args.rerank_weight
    table[f"fine-tuned, fused w={w}"] = rerank_ndcg(tuned, w)
    if args.cache:  # the held-out scores, to study the fusion weight without fine-tuning again
        (args.cache / f"heldout_scores_seed{args.seed}.json").write_text(json.dumps(tuned))
    base = table["fused"]
    labels = {"bm25": "BM25 (bm25s)", "dense": "bi-encoder (MiniLM + FAISS)", "fused": "fused first stage (RRF)",
              "cross-encoder, untuned": "cross-encoder, untuned", "cross-encoder, fine-tuned": "cross-encoder, fine-tuned",
              f"fine-tuned, fused w={w}": f"fine-tuned + first stage, w {w}"}
    print(f"\nquality: Cranfield, NDCG@10 on {len(test_ids)} held-out queries (20% by query, seed {args.seed}); "
          f"rerankers reorder the fused top {args.top_n}; fine-tuned on {len(pairs)} feedbacks of "
          f"{len(train_ids)} queries, {args.epochs} epoch(s), batch 16, lr {args.lr}, max_length {args.max_length}, "
          f"{train_s:.0f} s on {torch.get_num_threads()} threads")
    print(f"{'first stage / reranker':<30} {'NDCG@10':>8} {'vs fused':>9}")
    for key, label in labels.items():
        print(f"{label:<30} {table[key]:>8.4f} {100 * (table[key] / base - 1):>+8.1f}%")
    table["_elapsed_s"] = time.perf_counter() - t0
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--speed", action="store_true")
    ap.add_argument("--quality", action="store_true")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--cache", type=Path, default=None, help="keep the Cranfield search index here between runs")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=50, help="speed: queries timed per size")
    ap.add_argument("--reranker", default=None, help="speed: a reranker run dir (default: the packaged base)")
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--top-n", type=int, default=20)
    ap.add_argument("--rerank-weight", type=float, default=0.5,
                    help="quality: the reranker's weight in its fusion with the first stage (ranking.rerank)")
    ap.add_argument("--feedback-rate", type=float, default=0.5)
    ap.add_argument("--limit-queries", type=int, default=0)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if not args.speed and not args.quality:
        args.speed = args.quality = True

    import torch

    from trainer.reranker.cranfield import read_cranfield
    from trainer.text_models import offline

    offline()
    torch.set_num_threads(args.threads)
    if not args.data.exists():
        sys.exit(f"Cranfield not found at {args.data}: this benchmark needs shared/data/cranfield")
    cran = read_cranfield(args.data)
    index = load_index(cran.docs, args.cache)
    out = {}
    if args.speed:
        speed(args, cran, index)
    if args.quality:
        out["quality"] = quality(args, cran, index)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
