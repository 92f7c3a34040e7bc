"""2-D maps of backbone features: seconds and trustworthiness (k = 10) of each map method, on one feature set.

Features: a random-init ResNet-18 (standard stem, seed 0) on the first ``--images`` / 10 CIFAR-10
test images of each class, 32 px. Methods: openTSNE and scikit-learn's t-SNE (Barnes-Hut), UMAP
(umap-learn), each single-threaded with seed 0; a first call may compile (numba) or load code,
so each method is timed on the first call and on ``--repeats`` more, and all times are printed.
The hand-written exact t-SNE these replaced was measured once with this script at commit 5dbbcf6
(docs/benchmarks.md).

    python -m bench.embedding_maps --data ../shared/data/cifar10-jpeg.zip [--images 2000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.manifold import TSNE, trustworthiness

from sempairs.config import DataConfig
from sempairs.experiments.embedding_maps import PERPLEXITY, embed_2d
from sempairs.experiments.plots import balanced_subset
from sempairs.models import BackboneConfig, build_backbone
from sempairs.train.data import load_split
from sempairs.trained.features import extract_features

METHODS = {
    "openTSNE (sempairs tsne)": lambda x: embed_2d(x, "tsne"),
    "scikit-learn TSNE (Barnes-Hut)": lambda x: TSNE(perplexity=PERPLEXITY, init="pca", random_state=0,
                                                     n_jobs=1).fit_transform(x),
    "umap-learn (sempairs umap)": lambda x: embed_2d(x, "umap"),
}


def features(zip_path: str, images: int) -> tuple[np.ndarray, np.ndarray]:
    """Random-init ResNet-18 features (N, 512) and labels of a class-balanced slice of the test split."""
    store = load_split(DataConfig(dataset=zip_path), "test", None)
    store = store.subset(balanced_subset(store.labels, images))
    torch.manual_seed(0)
    net, _ = build_backbone(BackboneConfig(small_stem=False), 32)
    feats = extract_features(net, store.tensor(), 32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), batch_size=250)
    return feats.numpy().astype(np.float64), store.labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="CIFAR-10 zip (the shared cifar10-jpeg.zip)")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=1, help="timed calls per method after the first (which may compile or load code)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    x, labels = features(args.data, args.images)
    print(f"{len(x)} images x {x.shape[1]} features; trustworthiness k=10 (1: every map neighbour a true neighbour)")
    print(f"{'method':34s} {'seconds':>9s} {'trust':>7s} {'5-NN class agreement':>21s}")
    for name, fn in METHODS.items():
        times = []
        for _ in range(1 + args.repeats):
            start = time.perf_counter()
            y = np.asarray(fn(x))
            times.append(time.perf_counter() - start)
        d = ((y[:, None] - y[None]) ** 2).sum(-1)
        np.fill_diagonal(d, np.inf)
        agree = (labels[np.argsort(d, 1)[:, :5]] == labels[:, None]).mean()
        shown = " / ".join(f"{t:.1f}" for t in times)
        print(f"{name:34s} {shown:>9s} {trustworthiness(x, y, n_neighbors=10):7.4f} {agree:21.3f}")


if __name__ == "__main__":
    main()
