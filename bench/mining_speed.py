"""Benchmark: knn_search of N random 512-d embeddings against themselves, top-10, self excluded (seconds).

Run from the repository root::

    python -m bench.mining_speed                          # CUDA: 1,000,000 with torch; else 50,000 with faiss
    python -m bench.mining_speed --n 50000 --backend faiss
    python -m bench.mining_speed --n 50000 --backend torch
    python -m bench.mining_speed --n 1000000 --backend torch --precision bfloat16   # on a GPU

The time covers the whole search (index build included for faiss), after one small warm-up call.
"""

from __future__ import annotations

import argparse
import time

import torch

from bench.throughput import synchronize
from sempairs.pairs.search import FAISS_EXACT_MAX, knn_search, resolve_backend


def search_time(n: int, dim: int = 512, k: int = 10, backend: str = "torch", precision: str = "float32",
                device: str = "cpu", max_bytes: int | None = None, exact_max: int = FAISS_EXACT_MAX) -> dict:
    """Seconds of ``knn_search`` of ``n`` seeded random ``dim``-d embeddings against themselves (top-``k``, self
    excluded) on ``device``, after one small warm-up call; with the backend used and the mean top-1 cosine."""
    x = torch.randn(n, dim, generator=torch.Generator().manual_seed(0)).to(device)
    options = {"precision": precision, "max_bytes": max_bytes, "exact_max": exact_max}
    knn_search(x[:1000], x[:1000], k, backend=backend, **options)  # warm-up (CUDA context, threads)
    synchronize(device)
    start = time.perf_counter()
    scores, _ = knn_search(x, x, k, backend=backend, **options)
    synchronize(device)
    seconds = time.perf_counter() - start
    used = resolve_backend(backend)
    index = ("flat, exact" if n <= exact_max else "HNSW") if used == "faiss" else precision
    return {"n": n, "dim": dim, "k": k, "backend": used, "index": index, "device": device, "seconds": seconds,
            "queries_per_s": n / seconds, "mean_top1_cosine": scores[:, 0].mean().item()}


def main() -> None:
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000 if cuda else 50_000, help="embeddings (queries = database)")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--backend", default="torch" if cuda else "faiss", choices=["auto", "torch", "faiss"])
    parser.add_argument("--precision", default="float32", choices=["float32", "bfloat16", "float16"], help="torch matmul precision")
    parser.add_argument("--max-bytes", type=int, default=None, help="torch: memory for one chunk of scores (default: 512 MiB on CPU, 1/4 of free GPU memory)")
    parser.add_argument("--exact-max", type=int, default=FAISS_EXACT_MAX, help="faiss: exact index up to this size, HNSW above")
    args = parser.parse_args()

    device = "cuda" if cuda and args.backend != "faiss" else "cpu"
    r = search_time(args.n, args.dim, args.k, args.backend, args.precision, device, args.max_bytes, args.exact_max)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, device {device}")
    print(f"knn_search n={r['n']} dim={r['dim']} k={r['k']} backend={r['backend']} ({r['index']}): {r['seconds']:.2f} s "
          f"({r['queries_per_s']:,.0f} queries/s); mean top-1 cosine {r['mean_top1_cosine']:.4f}")


if __name__ == "__main__":
    main()
