"""Transfer: one backbone evaluated (kNN + linear probe) on several labelled datasets and class subsets.

Every dataset (``cifar10``, ``cifar100``, ``stl10`` or any path :func:`load_dataset` reads) is
loaded at the backbone's pretraining resolution; the features of its train and test splits are
computed once (and cached beside the checkpoint, see :func:`cached_features`), then each class
group is a slice of them with its labels renumbered:

* ``classes=None``: ``all`` classes, plus, when the checkpoint was pretrained on a class subset
  (``data.classes`` in its config), ``seen`` (those of its pretraining classes the dataset has)
  and ``unseen`` (the dataset's other classes), each evaluated as its own classification task;
  a group of fewer than two classes is left out.
* ``classes="seen"`` or ``"unseen"``: only that group (the checkpoint must have ``data.classes``).
* ``classes=[names]``: only those classes (group ``subset``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch

from sempairs.data.sources import select_indices
from sempairs.errors import InputError
from sempairs.trained.loading import LoadedBackbone
from sempairs.trained.features import cached_features
from sempairs.eval.linear import linear_probe
from sempairs.eval.protocol import knn_result
from sempairs.eval.selection import load_split, whole_dataset


def labelled_features(backbone: LoadedBackbone, dataset: str | os.PathLike, split: str, root: str | None = None,
                      download: bool = False, cache_dir=None, batch_size: int = 1024,
                      ) -> tuple[torch.Tensor, torch.Tensor, list[str], str]:
    """Features, labels, class names and source of one labelled split, at the backbone's resolution."""
    store = load_split(whole_dataset(dataset, backbone.size, root, download), split, None)
    if store.labels is None:
        raise InputError(f"{store.source} ({split}) has no labels. Fix: give a labelled split or dataset")
    device = next(backbone.module.parameters()).device
    feats = cached_features(backbone, store, cache_dir=cache_dir, batch_size=batch_size,
                            channels_last=device.type == "cuda")
    return feats, torch.from_numpy(store.labels), list(store.class_names), store.source


def class_groups(backbone: LoadedBackbone, class_names: Sequence[str],
                 classes: Sequence[str] | str | None = None) -> dict[str, list[str]]:
    """The class groups to evaluate on a dataset with ``class_names`` (see the module docstring)."""
    pretrained = backbone.config.data.classes if backbone.config is not None else None
    if isinstance(classes, str) and classes not in ("seen", "unseen"):
        raise InputError(f"classes={classes!r}: give 'seen', 'unseen' or a list of class names")
    if classes in ("seen", "unseen") and pretrained is None:
        raise InputError(f"classes={classes!r} needs a checkpoint pretrained on a class subset (data.classes); "
                         f"{backbone.path} was pretrained on all classes. Fix: give a list of class names")
    if classes is not None and not isinstance(classes, str):
        return {"subset": list(classes)}
    groups = {"all": list(class_names)} if classes is None else {}
    if pretrained is not None:
        split = {"seen": [c for c in class_names if c in pretrained],
                 "unseen": [c for c in class_names if c not in pretrained]}
        for name, members in split.items():
            if classes == name and len(members) < 2:
                raise InputError(f"the dataset has {len(members)} {name} classes ({members}): a task needs two")
            if classes in (None, name) and len(members) >= 2:
                groups[name] = members
    return groups


def _rows(labels: torch.Tensor, class_names: Sequence[str], group: Sequence[str], source: str):
    rows, new_labels, _ = select_indices(labels.numpy(), len(labels), class_names, group, None, source)
    return torch.from_numpy(rows), torch.from_numpy(np.asarray(new_labels))


def transfer_evaluate(backbone: LoadedBackbone, datasets: Sequence[str], classes: Sequence[str] | str | None = None,
                      root: str | None = None, download: bool = False, knn_k: int = 200, knn_temperature: float = 0.1,
                      linear: bool = True, l2: float | None = None, seed: int = 0, train_split: str = "train",
                      test_split: str = "test", cache_dir=None, batch_size: int = 1024) -> dict:
    """kNN and (with ``linear``) linear-probe accuracy per dataset and class group: ``{dataset: {group: {...}}}``."""
    results = {}
    for dataset in datasets:
        train_f, train_y, names, source = labelled_features(backbone, dataset, train_split, root, download, cache_dir, batch_size)
        test_f, test_y, test_names, _ = labelled_features(backbone, dataset, test_split, root, download, cache_dir, batch_size)
        if test_names != names:
            raise InputError(f"{source}: the {train_split} and {test_split} splits have different classes")
        per_group = {}
        for group, members in class_groups(backbone, names, classes).items():
            tr_rows, tr_y = _rows(train_y, names, members, source)
            te_rows, te_y = _rows(test_y, names, members, source)
            tr_x, te_x = train_f[tr_rows.to(train_f.device)], test_f[te_rows.to(test_f.device)]
            entry = {"classes": list(members), **knn_result(tr_x, tr_y, te_x, te_y, len(members), knn_k, knn_temperature)}
            if linear:
                probe = linear_probe(tr_x, tr_y, te_x, te_y, len(members), l2=l2, seed=seed)
                entry.update({k: v for k, v in probe.items() if k.startswith("linear_")})
            per_group[group] = entry
        results[str(dataset)] = per_group
    return results
