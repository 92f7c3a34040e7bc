"""sempairs' CIFAR-10-C corruptions against the ``imagecorruptions`` package, on real CIFAR-10 test images.

imagecorruptions (1.1.2) implements the corruptions with ImageNet-C's parameter tables, so its
severity k is not CIFAR-10-C's severity k. Where one of its parameters equals one of CIFAR-10-C's
(``SAME_PARAMETERS``: package severity -> CIFAR-10-C severity), the two definitions are compared:
deterministic corruptions pixel by pixel (max and mean absolute difference, 8-bit levels), random
ones by their statistics over the batch (mean absolute change from the clean image and the share
of values changed). The package no longer imports on today's stack (setuptools without
``pkg_resources``, NumPy 2 without ``np.float_``, scikit-image without ``multichannel``):
:func:`load_imagecorruptions` patches those three names for this comparison only. Every package
corruption is also run once at every severity to record which work.

    python -m bench.corruption_reference --data ../shared/data/cifar10-jpeg.zip [--images 200]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import types
import warnings
from pathlib import Path

import numpy as np

from sempairs.config import DataConfig
from sempairs.eval.corruptions import STANDARD_CORRUPTIONS, corrupt
from sempairs.experiments.plots import balanced_subset
from sempairs.train.data import load_split

# Package severity -> CIFAR-10-C severity with the same parameters (from the two tables); other pairs differ.
SAME_PARAMETERS = {
    "gaussian_noise": {1: 3},  # sigma .08
    "impulse_noise": {1: 3},  # amount .03
    "zoom_blur": {1: 2, 2: 3},  # arange(1, 1.11, .01), arange(1, 1.16, .01)
    "brightness": {1: 2, 2: 4, 3: 5},  # .1 .2 .3
    "contrast": {1: 3, 2: 4},  # .4 .3
}
DETERMINISTIC = ("zoom_blur", "brightness", "contrast")


def load_imagecorruptions() -> types.ModuleType:
    """The imagecorruptions package, importable on NumPy 2 / setuptools >= 81 / scikit-image >= 0.25 (names patched)."""
    if "pkg_resources" not in sys.modules:
        shim = types.ModuleType("pkg_resources")
        package_dir = Path(importlib.util.find_spec("imagecorruptions").submodule_search_locations[0])
        shim.resource_filename = lambda _name, relative: str(package_dir / relative)
        sys.modules["pkg_resources"] = shim
    if not hasattr(np, "float_"):
        np.float_ = np.float64
    with warnings.catch_warnings():  # its scipy.ndimage.interpolation import: deprecated, still there
        warnings.simplefilter("ignore", DeprecationWarning)
        import imagecorruptions
        import imagecorruptions.corruptions as module
    from skimage.filters import gaussian

    def gaussian_channels(image, *args, multichannel=None, **kwargs):
        return gaussian(image, *args, channel_axis=-1 if multichannel else None, **kwargs)

    module.gaussian = gaussian_channels
    return imagecorruptions


def package_corrupt(images: np.ndarray, name: str, severity: int) -> np.ndarray:
    """``imagecorruptions.corrupt`` of every image (its global numpy generator seeded 0 first)."""
    package = load_imagecorruptions()
    np.random.seed(0)
    return np.stack([package.corrupt(im, severity=severity, corruption_name=name) for im in images])


def change(images: np.ndarray, out: np.ndarray) -> tuple[float, float]:
    """Mean absolute change from the clean images (8-bit levels) and the share of values changed."""
    diff = np.abs(out.astype(np.int64) - images)
    return float(diff.mean()), float((diff > 0).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="CIFAR-10 zip (the shared cifar10-jpeg.zip)")
    parser.add_argument("--images", type=int, default=200)
    args = parser.parse_args()
    store = load_split(DataConfig(dataset=args.data), "test", None)
    images = store.images[balanced_subset(store.labels, args.images)]
    print(f"{len(images)} CIFAR-10 test images, 32 px")
    for name in STANDARD_CORRUPTIONS:
        failures = []
        for severity in range(1, 6):
            try:
                package_corrupt(images[:2], name, severity)
            except Exception as exc:  # the package's own failures on today's stack are what is recorded
                failures.append(f"{severity}: {type(exc).__name__}: {str(exc).splitlines()[0][:80]}")
        print(f"{name}: package runs at {5 - len(failures)}/5 severities" + "".join(f"\n    {f}" for f in failures))
        for package_severity, severity in SAME_PARAMETERS.get(name, {}).items():
            theirs, ours = package_corrupt(images, name, package_severity), corrupt(images, name, severity)
            if name in DETERMINISTIC:
                diff = np.abs(theirs.astype(np.int64) - ours)
                print(f"    package {package_severity} = CIFAR-10-C {severity}: |difference| max {diff.max()}, "
                      f"mean {diff.mean():.4f}, share of values differing {(diff > 0).mean():.4f}")
            else:
                (t_mean, t_share), (o_mean, o_share) = change(images, theirs), change(images, ours)
                print(f"    package {package_severity} = CIFAR-10-C {severity}: mean |change| package {t_mean:.3f} "
                      f"sempairs {o_mean:.3f}; share changed package {t_share:.4f} sempairs {o_share:.4f}")


if __name__ == "__main__":
    main()
