"""Benchmark: t-SNE maps of CIFAR-10 test images (raw pixels, PCA to 50 dims) by several implementations.

Run from the repository root (SEMPAIRS_DATA names the folder holding ``cifar10-jpeg.zip``)::

    SEMPAIRS_DATA=/work/shared/data python -m bench.tsne_compare                  # N = 1,000 and 3,000, 2 threads
    SEMPAIRS_DATA=/work/shared/data python -m bench.tsne_compare --n 1000 --methods sempairs openTSNE-fft
    git show c481655:sempairs/experiments/tsne.py > /tmp/tsne_handwritten.py      # the former hand-written exact t-SNE
    SEMPAIRS_DATA=/work/shared/data python -m bench.tsne_compare --handwritten /tmp/tsne_handwritten.py

Every method gets the same points (the first N/10 test images of each class, pixels in [0, 1], PCA
to 50 dims) and the same schedule: perplexity 30, 250 iterations of early exaggeration 12, then 750
more, PCA initialisation. Time: the fastest of ``--repeats`` calls (affinities included, the shared
PCA not); "rerun equal" says whether the repeats gave identical maps. Quality, against the 50-dim
points: trustworthiness (k = 10, scikit-learn), the share of each point's 10 nearest neighbours that
are among its 10 nearest in 2-D, the share of its 10 nearest in 2-D of the same class, and KL(P || Q)
with P from exact 90-neighbour perplexity calibration (openTSNE's) and the exact Student-t Q of the map,
the same measure for every method (lower is better; "reported": the library's own figure).
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from collections.abc import Callable

import numpy as np
import openTSNE
import sklearn.manifold
import torch
from sklearn.neighbors import NearestNeighbors

from sempairs.data.registry import load_dataset
from sempairs.experiments.tsne import tsne

Embed = Callable[[np.ndarray], tuple[np.ndarray, float | None]]  # points -> (map, the KL the method reports)


def cifar_points(n: int, dims: int) -> tuple[np.ndarray, np.ndarray]:
    """The first n/10 CIFAR-10 test images of each class as pixels in [0, 1] projected on their top ``dims`` principal axes."""
    store = load_dataset("cifar10", "test", limit_per_class=n // 10)
    x = torch.from_numpy(store.images.reshape(len(store), -1)).double() / 255
    x = x - x.mean(0)
    _, _, vt = torch.linalg.svd(x, full_matrices=False)
    return (x @ vt[:dims].T).float().numpy(), np.asarray(store.labels)


def methods(threads: int, handwritten: str | None) -> dict[str, Embed]:
    """The implementations to compare, each with the schedule of the module docstring."""
    def sklearn_tsne(method: str) -> Embed:
        def run(x):
            model = sklearn.manifold.TSNE(perplexity=30, early_exaggeration=12, max_iter=1000, init="pca", method=method,
                                          random_state=0, n_jobs=threads)
            return model.fit_transform(x), float(model.kl_divergence_)
        return run

    def open_tsne(gradient: str) -> Embed:
        def run(x):
            y = openTSNE.TSNE(perplexity=30, early_exaggeration=12, early_exaggeration_iter=250, n_iter=750, initialization="pca",
                              neighbors="exact", negative_gradient_method=gradient, random_state=0, n_jobs=threads).fit(x)
            return np.asarray(y), float(y.kl_divergence)
        return run

    table = {"sempairs": lambda x: (tsne(torch.from_numpy(x)).numpy(), None),
             "sklearn-bh": sklearn_tsne("barnes_hut"), "sklearn-exact": sklearn_tsne("exact"),
             "openTSNE-bh": open_tsne("bh"), "openTSNE-fft": open_tsne("fft")}
    if handwritten:
        spec = importlib.util.spec_from_file_location("tsne_handwritten", handwritten)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        table["handwritten"] = lambda x: (module.tsne(torch.from_numpy(x)).numpy(), None)
    return table


def neighbours(x: np.ndarray, k: int) -> np.ndarray:
    """Indices (N, k) of each point's k nearest other points."""
    return NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x, return_distance=False)[:, 1:]


def exact_kl(p, y: np.ndarray) -> float:
    """KL(P || Q) for sparse joint affinities P (sum 1) and the exact Student-t Q of the map ``y``."""
    d2 = ((y[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    kernel = 1 / (1 + d2)
    np.fill_diagonal(kernel, 0)
    rows, cols = p.nonzero()
    pv = np.asarray(p[rows, cols]).ravel()
    q = kernel[rows, cols] / kernel.sum()
    return float((pv * np.log(pv / q)).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 3000], help="points (multiples of 10: N/10 per class)")
    parser.add_argument("--methods", nargs="+", default=["handwritten", "sempairs", "sklearn-bh", "openTSNE-bh", "openTSNE-fft"],
                        help="among sempairs, handwritten, sklearn-bh, sklearn-exact, openTSNE-bh, openTSNE-fft")
    parser.add_argument("--handwritten", default=None, help="path of a copy of the former hand-written tsne module")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--pca-dims", type=int, default=50)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    table = methods(args.threads, args.handwritten)
    unknown = [m for m in args.methods if m not in table]
    if unknown:
        parser.error(f"unknown method(s) {unknown} (handwritten needs --handwritten PATH); choose among {sorted(table)}")
    print("| N | method | time | vs first | trustworthiness | 10-NN kept | class 10-NN in 2-D | KL | KL reported | rerun equal |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for n in args.n:
        x, labels = cifar_points(n, args.pca_dims)
        p = openTSNE.affinity.PerplexityBasedNN(x, perplexity=30, method="exact", random_state=0).P
        high = neighbours(x, 10)
        first = None
        for name in args.methods:
            maps, times = [], []
            for _ in range(args.repeats):
                start = time.perf_counter()
                y, reported = table[name](x)
                times.append(time.perf_counter() - start)
                maps.append(y)
            y, seconds = maps[0], min(times)
            first = first or seconds
            low = neighbours(y, 10)
            kept = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(high, low)])
            trust = sklearn.manifold.trustworthiness(x, y, n_neighbors=10)
            purity = (labels[low] == labels[:, None]).mean()
            equal = all(np.array_equal(y, other) for other in maps[1:])
            shown = "-" if reported is None else f"{reported:.3f}"
            print(f"| {n:,} | {name} | {seconds:.1f} s | {seconds / first:.2f}x | {trust:.4f} | {kept:.3f} | {purity:.3f} | "
                  f"{exact_kl(p, y):.3f} | {shown} | {'yes' if equal else 'no'} |", flush=True)


if __name__ == "__main__":
    main()
