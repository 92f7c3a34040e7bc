"""Named datasets, one module each: a module of this package that defines a dataset registers it.

``DATASETS`` imports every module of the package the first time it is read, so a new named
dataset is one new file here.
"""

from sempairs.data.datasets.base import DATASETS, NamedDataset, Torchvision, register

__all__ = ["DATASETS", "NamedDataset", "Torchvision", "register"]
