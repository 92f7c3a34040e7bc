"""CIFAR-10, read from torchvision's ``cifar-10-batches-py`` or a local image folder, zip or npz."""

from sempairs.data.datasets.base import NamedDataset, Torchvision, register

register(NamedDataset(
    name="cifar10",
    description="CIFAR-10: 60,000 32x32 colour images in 10 classes (train 50,000, test 10,000)",
    num_classes=10,
    splits=("train", "test"),
    torchvision=Torchvision("CIFAR10", "cifar-10-batches-py"),
))
