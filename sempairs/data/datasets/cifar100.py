"""CIFAR-100 (fine labels), read from torchvision's ``cifar-100-python`` or a local image folder, zip or npz."""

from sempairs.data.datasets.base import NamedDataset, Torchvision, register

register(NamedDataset(
    name="cifar100",
    description="CIFAR-100: 60,000 32x32 colour images in 100 classes (train 50,000, test 10,000)",
    num_classes=100,
    splits=("train", "test"),
    torchvision=Torchvision("CIFAR100", "cifar-100-python"),
))
