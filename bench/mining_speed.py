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

from sempairs.pairs.search import FAISS_EXACT_MAX, knn_search, resolve_backend


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
    x = torch.randn(args.n, args.dim, generator=torch.Generator().manual_seed(0)).to(device)
    options = {"precision": args.precision, "max_bytes": args.max_bytes, "exact_max": args.exact_max}
    knn_search(x[:1000], x[:1000], args.k, backend=args.backend, **options)  # warm-up (CUDA context, threads)
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    scores, _ = knn_search(x, x, args.k, backend=args.backend, **options)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    backend = resolve_backend(args.backend)
    index = ("flat, exact" if args.n <= args.exact_max else "HNSW") if backend == "faiss" else args.precision
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, device {device}")
    print(f"knn_search n={args.n} dim={args.dim} k={args.k} backend={backend} ({index}): {seconds:.2f} s "
          f"({args.n / seconds:,.0f} queries/s); mean top-1 cosine {scores[:, 0].mean():.4f}")


if __name__ == "__main__":
    main()
