"""2-D maps (openTSNE, umap-learn): what they preserve on clustered data, fixed by the seed, bad input refused."""

import importlib.util

import numpy as np
import pytest
from sklearn.manifold import trustworthiness

from sempairs.errors import InputError, MissingPackage
from sempairs.experiments.embedding_maps import embed_2d
from sempairs.experiments.grid import ExperimentConfig


def clusters(points: int = 150, dims: int = 20) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = np.arange(points) % 3
    return (rng.normal(size=(3, dims)) * 8)[labels] + rng.normal(size=(points, dims)), labels


@pytest.mark.parametrize("method", ["tsne", "umap"])
def test_map_keeps_neighbours_and_clusters_and_is_fixed_by_its_seed(method):
    x, labels = clusters()
    y = embed_2d(x, method)
    assert y.shape == (150, 2) and y.dtype == np.float64 and np.isfinite(y).all()
    assert trustworthiness(x, y, n_neighbors=10) > 0.9  # a random map scores about 0.5
    d = ((y[:, None] - y[None]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    assert (labels[np.argsort(d, 1)[:, :5]] == labels[:, None]).all()  # no point's map neighbours cross clusters
    assert np.array_equal(y, embed_2d(x, method))  # same seed, same map
    assert not np.allclose(y, embed_2d(x, method, seed=1))


def test_map_refuses_unknown_methods_and_too_few_points():
    x, _ = clusters()
    with pytest.raises(InputError, match="unknown map method 'pca'; use tsne or umap"):
        embed_2d(x, "pca")
    with pytest.raises(InputError, match="at least 4 feature vectors"):
        embed_2d(x[:3])


def test_a_umap_grid_without_umap_learn_fails_before_training_with_the_pip_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "umap" else real(name, *a))
    with pytest.raises(MissingPackage, match=r"pip install 'sempairs\[umap\]'"):
        ExperimentConfig(name="maps", axes={"train.seed": [0]}, embedding_method="umap")
    assert ExperimentConfig(name="maps", axes={"train.seed": [0]}).embedding_method == "tsne"
