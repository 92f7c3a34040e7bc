"""The one kNN evaluation path: a :class:`Selection` (which images, which settings) -> a recorded kNN result.

The training loop's final and periodic kNN, the grid evaluations ``knn``, ``unseen_classes`` and
``random_init`` and ``sempairs eval knn`` all call :func:`knn_evaluate`; :func:`knn_result` is the
one place a kNN result is assembled (also for ``sempairs eval transfer``'s groups). A result
records the k it used (at most the memory's size), not the k asked for, and with its selection
and settings the key of its file (:func:`sempairs.eval.results.result_path`).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from sempairs.config import DataConfig, KnnConfig, validate
from sempairs.strict import Strict
from sempairs.trained.features import cached_features
from sempairs.trained.loading import LoadedBackbone
from sempairs.eval.knn import knn_accuracy
from sempairs.eval.selection import labelled_splits, selection_key, selection_record

PROTOCOL = "knn"


class Selection(Strict):
    """What a kNN result is made on: the images (``data``, as a run's ``data`` section) and the settings (``knn``)."""

    data: DataConfig
    knn: KnnConfig = KnnConfig()

    @classmethod
    def of_run(cls, cfg) -> Selection:
        """A run's own selection: its ``data`` section and ``knn`` settings (``cfg``: its :class:`RunConfig`)."""
        return cls(data=cfg.data, knn=cfg.knn)

    @classmethod
    def checked(cls, data: dict, knn: dict, source: str) -> Selection:
        """A selection from plain values, validated by the run config's own rules (ConfigError naming each key)."""
        return validate(cls, {"data": data, "knn": knn}, source)

    @property
    def settings(self) -> dict:
        """The protocol's settings as asked (the key of the result file)."""
        return {"k": self.knn.k, "temperature": self.knn.temperature}

    @property
    def key(self) -> str:
        """The key of this selection's result file: another selection or setting, another key."""
        return selection_key(PROTOCOL, self.data, self.settings)


def knn_result(train_features: torch.Tensor, train_labels: torch.Tensor, test_features: torch.Tensor,
               test_labels: torch.Tensor, num_classes: int, k: int, temperature: float) -> dict:
    """Weighted kNN top-1/top-5 (%) with the settings used (k capped at the memory's size) and the image counts."""
    used_k = min(k, len(train_labels))
    return {**knn_accuracy(train_features, train_labels, test_features, test_labels, num_classes, used_k, temperature),
            "knn_k": used_k, "knn_temperature": temperature, "train_images": len(train_labels),
            "test_images": len(test_labels)}


def knn_evaluate(backbone: LoadedBackbone | nn.Module, selection: Selection, view: tuple | None = None,
                 batch_size: int = 1024, channels_last: bool = False) -> dict:
    """kNN accuracy of ``backbone`` on ``selection``: its memory split as memory, its query split as queries.

    ``view``: ``(size, mean, std)`` of the images for a bare module (a :class:`LoadedBackbone` brings
    its own). The result has the flat numbers of :func:`knn_result`, the ``selection`` record and its ``key``.
    """
    size, mean, std = view or (None, None, None)
    train, test = labelled_splits(selection.data)
    feats = [cached_features(backbone, store, size, mean, std, batch_size=batch_size, channels_last=channels_last)
             for store in (train, test)]
    result = knn_result(feats[0], torch.from_numpy(train.labels), feats[1], torch.from_numpy(test.labels),
                        train.num_classes, selection.knn.k, selection.knn.temperature)
    return {**result, "selection": selection_record(selection.data), "key": selection.key}


def result_columns(result: dict) -> dict:
    """The numbers of a kNN result (accuracies, settings used, image counts) without its record, for a table row."""
    return {name: value for name, value in result.items() if name not in ("selection", "key")}
