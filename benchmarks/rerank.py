"""Reranking benchmark: speed (CPU) and quality (Cranfield).

    python benchmarks/rerank.py                 # both tables
    python benchmarks/rerank.py --speed         # p50/p99 of reranking 10/20/50 candidates, search end to end
    python benchmarks/rerank.py --quality       # NDCG@10 on held-out Cranfield queries
    python benchmarks/rerank.py --speed --reranker artifacts/reranker/current   # a trained run's weights
    python benchmarks/rerank.py --speed --reranker RUN --baseline-reranker RUN6  # two runs on the same inputs
    python benchmarks/rerank.py --quality --base-layers 3 --epochs 8 --lr 1e-4 --feedback-rate 1.0 --save-model DIR

Speed: the product's reranker (``trainer.text_models.load_reranker``, what the API loads)
scores (query, abstract) pairs of Cranfield, torch fp32 and the run's int8 ONNX export
(ONNX Runtime, ``--threads`` intra-op threads) of the same weights, at the export's max
length (the served one). Each call's inputs go through both backends in turn, so a change
of load on the shared machine hits both; torch takes part in the first ``--torch-repeats``
calls only (it is several times slower). Without ``--reranker``, the packaged base is
exported the way ``train-reranker`` exports a run (the speed of a pass does not depend on
the weights' values). Search end to end is ``SearchService.search_sync``, the API's own code
(query embedding, FAISS, bm25s, RRF, the top 20 reranked by the ONNX export), with the first
stage alone as the baseline of the same run. The 1-minute load average is printed: a p99
taken at a load above the core count says more about the neighbours than the reranker.

Quality: every query's first-stage list (RRF of the bi-encoder and BM25) is shown; the
feedback of users is simulated on it from the judgments (seeded; a judged-relevant document
is liked, the others disliked, each shown document with probability ``--feedback-rate``)
for 80% of the queries (split by query); ``streamrec train-reranker``'s own pipeline
(``trainer.reranker.pipeline.train_reranker``) trains on that feedback as it would on the
topic's: its own 80/20 split of those queries, fine-tuning from the packaged MiniLM (its
first ``--base-layers`` layers), the int8 export, the fusion weight with the first stage
chosen on its validation lists, the promotion gate. NDCG@10 (gains 5 - grade over every
judged document) is reported on the other 20% of the queries, never seen by training nor by
the choice of the weight, for BM25, the bi-encoder, the fused first stage, the untuned
cross-encoder, and the run through both backends (torch fp32 and the ONNX int8 export that
serves), alone and fused with the first stage at the run's weight (as served) and at 0.5.
``--reranker RUN_DIR`` skips the training and measures a saved run.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = ROOT.parent / "shared" / "data" / "cranfield"


def cpu_summary() -> str:
    """The CPU's model and the vector extensions the int8 pass's speed depends on (VNNI: int8
    dot products; AMX: matrix tiles). Sessions land on different 2-core hosts: the same
    script gave 96 ms p99 for 20 candidates on an earlier one (its flags were not recorded)
    and 48 ms on one with both (docs/search-reranking.md), so the table says which it ran on."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "cpu unknown"
    name = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), "cpu")
    flags = next((set(ln.split(":", 1)[1].split()) for ln in info.splitlines() if ln.startswith("flags")), set())
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "amx_bf16")
    return f"{name}, {os.cpu_count()} cpus, {' '.join(f for f in wanted if f in flags) or 'no avx2'}"


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
def reranker_dir(args, max_length: int) -> tuple[Path, str]:
    """A reranker run's model folder with its ONNX export: ``--reranker RUN_DIR``, else the
    packaged base (untrained head: the speed of a pass does not depend on the weights' values)
    saved and exported to a temporary folder the way ``train-reranker`` exports a run."""
    from trainer.reranker.onnx_backend import export_onnx, has_onnx
    from trainer.text_models import load_cross_encoder

    if args.reranker:
        model_dir = Path(args.reranker) / "model"
        if not has_onnx(model_dir):
            sys.exit(f"{args.reranker} has no ONNX export (model/onnx/): train it with this version of train-reranker")
        layers = json.loads((model_dir / "config.json").read_text()).get("num_hidden_layers")
        return model_dir, f"reranker run {Path(args.reranker).name} ({layers} layers)"
    from trainer.reranker.base import encoder_layers, keep_first_layers

    model_dir = Path(tempfile.mkdtemp()) / "model"
    ce = keep_first_layers(load_cross_encoder(None, max_length=max_length), args.base_layers)
    ce.save_pretrained(str(model_dir))
    t0 = time.perf_counter()
    export_onnx(ce, model_dir)
    print(f"exported the base to int8 ONNX in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return model_dir, (f"packaged base ({encoder_layers(ce)} layers), untrained head, exported at max_length "
                       f"{max_length}")


def speed(args, cran, index) -> dict:
    """p50/p99 of reranking n candidates through the product's reranker (``load_reranker``, as
    the API loads it), torch fp32 and ONNX int8 of the same weights, each query's inputs
    scored by both in turn (so load changes hit both); then search end to end."""
    import torch

    from inference.search import Loaded, SearchQuery, SearchService
    from schemas.settings import Settings
    from trainer.text_models import load_reranker

    settings = Settings(rerank_top_n=20, rerank_threads=args.threads)
    model_dir, source = reranker_dir(args, args.max_length)
    backends = {"torch fp32": load_reranker(model_dir, "torch", args.threads, args.max_length),
                "onnx int8": load_reranker(model_dir, "onnx", args.threads, args.max_length)}
    max_length = backends["onnx int8"].max_length
    if args.baseline_reranker:  # another run's export on the same inputs, e.g. the 6-layer model against a cut one
        base_dir = Path(args.baseline_reranker) / "model"
        base_layers = json.loads((base_dir / "config.json").read_text()).get("num_hidden_layers")
        backends[f"onnx int8, baseline ({base_layers} layers)"] = load_reranker(base_dir, "onnx", args.threads)
    qids = list(cran.queries)
    first, _ = index.first_stage(cran.queries[qids[0]], 100)
    docs = [index.text_of(i) for i, _ in first]
    short = [" ".join(d.split()[:12]) for d in docs]  # 12 words: a catalogue item's title and a few words
    rows, checks, loads = [], [], [os.getloadavg()[0]]
    cases = [(n, docs, "abstracts") for n in (10, 20, 50)] + [(20, short, "12 words")]
    for n, texts, kind in cases:
        samples: dict[str, list[float]] = {b: [] for b in backends}
        cpu: dict[str, list[float]] = {b: [] for b in backends}
        scores: dict[str, list[np.ndarray]] = {b: [] for b in backends}
        for r in range(args.repeats):
            pairs = [(cran.queries[qids[r % len(qids)]], t) for t in texts[:n]]
            for name, model in backends.items():
                if name == "torch fp32" and r >= args.torch_repeats:
                    continue
                if r == 0:
                    model.predict(pairs, batch_size=n, show_progress_bar=False)  # warm-up
                t0, c0 = time.perf_counter(), time.process_time()
                out = model.predict(pairs, batch_size=n, show_progress_bar=False)
                samples[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)  # all the process's threads: what a call costs
                if r < args.torch_repeats:
                    scores[name].append(np.asarray(out, dtype=np.float64))
        for name in backends:
            rows.append((name, n, kind, len(samples[name]), pct(samples[name], 50), pct(samples[name], 99),
                         pct(cpu[name], 50)))
        a, b = scores["torch fp32"], scores["onnx int8"]
        diff = max(float(np.abs(x - y).max()) for x, y in zip(a, b))
        top5 = np.mean([len(set(np.argsort(-x)[:5]) & set(np.argsort(-y)[:5])) for x, y in zip(a, b)])
        checks.append((n, kind, diff, top5))
        loads.append(os.getloadavg()[0])

    # search end to end: the API's code path with the served reranker, the first stage alone as the baseline
    svc = SearchService(settings)
    loaded = Loaded(index=index, cross_encoder=backends["onnx int8"])
    e2e = {"search, first stage only": [], "search + rerank top 20 (onnx int8)": []}
    for label in e2e:  # warm-up
        svc.search_sync(loaded, SearchQuery(cran.queries[qids[0]], k=10, use_reranker="rerank" in label))
    for r in range(args.repeats):
        for label in e2e:
            sq = SearchQuery(cran.queries[qids[r % len(qids)]], k=10, use_reranker="rerank" in label)
            t0 = time.perf_counter()
            svc.search_sync(loaded, sq)
            e2e[label].append(time.perf_counter() - t0)
    for label, samples in e2e.items():
        rows.append((label, 20 if "rerank" in label else 0, "abstracts", len(samples), pct(samples, 50),
                     pct(samples, 99), float("nan")))
    loads.append(os.getloadavg()[0])

    print(f"\nspeed: {cpu_summary()}")
    print(f"speed: {source}; max_length {max_length} (the export's, as served); {args.threads} threads "
          f"(torch: {torch.get_num_threads()}, onnxruntime intra-op: {args.threads}); one call per query, "
          f"torch and onnx on the same inputs in turn; load average (1 min) {' -> '.join(f'{x:.1f}' for x in loads)}")
    print("(cpu ms: CPU time of the call over all threads, p50 — what the call costs, less sensitive to the "
          "neighbours' load than its wall time)")
    print(f"{'what':<36} {'candidates':>10} {'texts':>10} {'calls':>6} {'p50 ms':>9} {'p99 ms':>9} {'cpu ms':>8}")
    for label, n, kind, calls, p50, p99, cpu_ms in rows:
        print(f"{label:<36} {n:>10} {kind:>10} {calls:>6} {p50:>9.1f} {p99:>9.1f} {cpu_ms:>8.1f}")
    for n, kind, diff, top5 in checks:
        print(f"onnx int8 vs torch fp32, {n} {kind}: max |score diff| {diff:.4f}, mean top-5 overlap {top5:.1f}/5")
    return {"rows": [dict(zip(("what", "candidates", "texts", "calls", "p50_ms", "p99_ms", "cpu_p50_ms"), r))
                     for r in rows],
            "checks": [dict(zip(("candidates", "texts", "max_abs_diff", "top5_overlap"), c)) for c in checks],
            "load": loads, "max_length": max_length, "source": source, "cpu": cpu_summary()}


# --- quality ----------------------------------------------------------------------------------
def ndcg_of(order: list[str], gains: dict[str, float], k: int = 10) -> float:
    from ranking.rerank import ndcg_at_k

    return ndcg_at_k([gains.get(d, 0.0) for d in order], k, all_gains=list(gains.values()))


def quality(args, cran, index) -> dict:
    import pandas as pd
    import torch

    from ranking.rerank import apply_reranker, rrf
    from trainer.reranker.cranfield import simulate_feedback
    from trainer.reranker.finetune import FineTuneParams
    from trainer.reranker.pairs import build_pairs, split_by_query
    from trainer.text_models import load_cross_encoder, load_reranker

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
    t0 = time.perf_counter()
    if args.reranker:  # an existing run's weights: compare its backends, no fine-tuning
        run_dir = Path(args.reranker)
        trained = f"reranker run {run_dir.name} (not fine-tuned here)"
    else:
        ce = load_cross_encoder(None, max_length=args.max_length)
        table["cross-encoder, untuned"] = rerank_ndcg(scores_of(ce, test_ids))
        del ce
        # the product path: `streamrec train-reranker` on the simulated feedback (its own 80/20 split of the
        # training queries: fine-tuning on 80%, the fusion weight and the promotion gate on the other 20%)
        from schemas.settings import Settings
        from trainer.reranker.pipeline import train_reranker

        artifacts = args.save_model or Path(tempfile.mkdtemp())
        settings = Settings(artifact_dir=artifacts, rerank_max_length=args.max_length, rerank_threads=args.threads,
                            rerank_base_layers=args.base_layers, rerank_weight=args.rerank_weight,
                            train_threads=args.train_threads)
        params = FineTuneParams(epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.lr, seed=args.seed,
                                loss=args.loss)
        result = train_reranker(settings, events, cran.docs, params=params, device="cpu", progress=args.progress,
                                start_from=args.start_from or "base",
                                say=lambda m: print(m, file=sys.stderr))
        run_dir = result.run_dir
        r = result.report
        trained = (f"train-reranker on {r['data']['feedbacks']} feedbacks of {len(train_ids)} queries "
                   f"({r['data']['train_pairs']} pairs to train, {r['data']['val_pairs']} of "
                   f"{r['data']['val_queries']} queries to validate), {r['start_from']}, {args.epochs} epoch(s), "
                   f"{args.loss} loss, batch {args.batch_size}, lr {args.lr}, max_length {args.max_length}, "
                   f"{r['train_seconds']:.0f} s on "
                   f"{args.train_threads} thread(s); validation NDCG@10 first stage "
                   f"{r['first_stage']['ndcg@10']:.4f}, reranker as served {r['after']['ndcg@10']:.4f}; "
                   f"{'promoted' if result.promoted else 'NOT promoted'}")
        print(f"run: {run_dir}", file=sys.stderr)
    from ranking.rerank import fusion_weight
    from trainer.reranker.store import read_info

    info = read_info(run_dir) if (run_dir / "info.json").exists() else {}
    w = fusion_weight(args.rerank_weight, info)  # the weight the run serves with
    model_dir = run_dir / "model"
    # the same weights through both backends the API can serve (trainer.text_models.load_reranker)
    for backend, label in (("torch", "torch fp32"), ("onnx", "onnx int8")):
        tuned = scores_of(load_reranker(model_dir, backend, args.threads, args.max_length), test_ids)
        table[f"fine-tuned, {label}"] = rerank_ndcg(tuned)
        table[f"fine-tuned, {label}, fused"] = rerank_ndcg(tuned, w)
        if w != 0.5:
            table[f"fine-tuned, {label}, fused w=0.5"] = rerank_ndcg(tuned, 0.5)
        if args.cache:  # the held-out scores, to study the fusion weight without fine-tuning again
            (args.cache / f"heldout_scores_seed{args.seed}_{backend}.json").write_text(json.dumps(tuned))
    base = table["fused"]
    labels = {"bm25": "BM25 (bm25s)", "dense": "bi-encoder (MiniLM + FAISS)", "fused": "fused first stage (RRF)",
              "cross-encoder, untuned": "cross-encoder, untuned"}
    for label in ("torch fp32", "onnx int8"):
        labels[f"fine-tuned, {label}"] = f"fine-tuned, {label}, alone"
        labels[f"fine-tuned, {label}, fused"] = f"fine-tuned, {label} + first stage, w {w} (served)"
        labels[f"fine-tuned, {label}, fused w=0.5"] = f"fine-tuned, {label} + first stage, w 0.5"
    print(f"\nquality: Cranfield, NDCG@10 on {len(test_ids)} held-out queries (20% by query, seed {args.seed}); "
          f"rerankers reorder the fused top {args.top_n}; {trained}; onnx int8 = the run's export, as served")
    print(f"{'first stage / reranker':<44} {'NDCG@10':>8} {'vs fused':>9}")
    for key, label in labels.items():
        if key in table:
            print(f"{label:<44} {table[key]:>8.4f} {100 * (table[key] / base - 1):>+8.1f}%")
    table["_elapsed_s"] = time.perf_counter() - t0
    return table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--speed", action="store_true")
    ap.add_argument("--quality", action="store_true")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--cache", type=Path, default=None, help="keep the Cranfield search index here between runs")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--train-threads", type=int, default=1,
                    help="quality: torch threads while fine-tuning (STREAMREC_TRAIN_THREADS; on the shared 2 cores, "
                         "2 threads took 6 s a step against 1-2.6 s with 1)")
    ap.add_argument("--repeats", type=int, default=100, help="speed: calls timed per size (one query each)")
    ap.add_argument("--torch-repeats", type=int, default=10,
                    help="speed: of those, how many torch fp32 also scores (it is 5-10x slower)")
    ap.add_argument("--reranker", default=None, help="a reranker run dir with model/ and model/onnx/ (speed: default "
                                                     "the packaged base, exported; quality: no fine-tuning)")
    ap.add_argument("--baseline-reranker", default=None,
                    help="speed: a second reranker run whose ONNX export is timed on the same inputs (its own max "
                         "length), e.g. the whole 6-layer model against a cut one")
    ap.add_argument("--save-model", type=Path, default=None, help="quality: keep the train-reranker run "
                                                                  "(artifacts dir: reranker/run_*) under this dir")
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--start-from", default=None, help="quality: a reranker run dir to fine-tune from (default: "
                                                       "the packaged base)")
    ap.add_argument("--loss", choices=("bce", "lambda"), default="bce", help="quality: train-reranker's loss")
    ap.add_argument("--batch-size", type=int, default=16, help="quality: pairs per step (bce), lists (lambda)")
    ap.add_argument("--max-length", type=int, default=64,
                    help="tokens of (query, text): fine-tuning and export (STREAMREC_RERANK_MAX_LENGTH)")
    ap.add_argument("--top-n", type=int, default=20)
    ap.add_argument("--rerank-weight", type=float, default=None,
                    help="quality: fix the reranker's weight in its fusion with the first stage (ranking.rerank); "
                         "default: the one train-reranker picks on its validation lists, as served")
    ap.add_argument("--base-layers", type=int, default=0,
                    help="quality: fine-tune the packaged MiniLM's first N layers (STREAMREC_RERANK_BASE_LAYERS; "
                         "0: all 6)")
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
        out["speed"] = speed(args, cran, index)
    if args.quality:
        out["quality"] = quality(args, cran, index)
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
