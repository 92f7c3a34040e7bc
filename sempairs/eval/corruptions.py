"""Common corruptions at five severities: the CIFAR-10-C protocol, plus occlusion.

Hendrycks & Dietterich (ICLR 2019), "Benchmarking Neural Network Robustness to Common
Corruptions and Perturbations"; parameters from the CIFAR (32 px) tables of its reference code
``make_cifar_c.py`` (github.com/hendrycks/robustness), re-implemented batched with numpy, PIL and
torch (no scipy, scikit-image, OpenCV or ImageMagick). ``x`` below is an image in [0, 1],
``c`` the severity's parameter(s), severities 1..5 left to right:

======================  ==========================================================================
gaussian_noise          ``x + N(0, c^2)``; c = .04 .06 .08 .09 .10
shot_noise              ``Poisson(x c) / c``; c = 500 250 100 75 50
impulse_noise           salt and pepper: each value (pixel and channel) is replaced with probability
                        c, by 1 or 0 with equal odds; c = .01 .02 .03 .05 .07
defocus_blur            convolution with a disk of radius r, antialiased by a 3x3 Gaussian of sigma
                        a (border: reflect-101); (r, a) = (.3, .4) (.4, .5) (.5, .6) (1, .2) (1.5, .1)
glass_blur              Gaussian blur (sigma s, border: nearest), 8-bit, then ``i`` passes in which
                        every inner pixel (rows and columns d+1 .. side-d) takes the value of the
                        pixel at a random offset in [-d, d) rows and columns, then the blur again;
                        (s, d, i) = (.05,1,1) (.25,1,1) (.4,1,1) (.25,1,2) (.4,1,2)
motion_blur             ImageMagick's motion blur of radius r and sigma s at a random angle in
                        [-45, 45] degrees: ``2 ceil(r) + 1`` taps ``exp(-i^2 / 2 s^2)`` (normalised)
                        at the pixels ``round(i cos a), round(i sin a)`` along the angle (edge pixels
                        repeat), rounded to 8 bits; (r, s) = (6,1) (6,1.5) (6,2) (8,2) (9,2.5)
zoom_blur               mean of the image and its centre zooms by every factor of
                        ``arange(1, z, .01)`` (bilinear, corners aligned); z = 1.06 1.11 1.16 1.21 1.26
snow                    a snow layer ``N(m, v^2)`` per pixel, centre-zoomed by z, zeroed below t,
                        8-bit, motion-blurred (radius r, sigma s, angle in [-135, -45]); the image is
                        first whitened, ``b x + (1 - b) max(x, 1.5 grey(x) + .5)``, then the layer and
                        its 180-degree rotation are added; (m, v, z, t, r, s, b) =
                        (.1,.2,1,.6,8,3,.95) (.1,.2,1,.5,10,4,.9) (.15,.3,1.75,.55,10,4,.9)
                        (.25,.3,2.25,.6,12,6,.85) (.3,.3,1.25,.65,14,12,.8)
frost                   ``a x + b F`` with F a random crop of one of the reference's first five frost
                        photographs (read from the ``imagecorruptions`` package's data, never
                        downloaded), shrunk to 0.2 (OpenCV's bilinear resize, 8-bit);
                        (a, b) = (1,.2) (1,.3) (.9,.4) (.85,.4) (.75,.45)
fog                     ``(x + c P) M / (M + c)``, P a plasma fractal (diamond-square, roughness
                        decay d) scaled to [0, 1], M the image's maximum; (c, d) = (.2,3) (.5,3)
                        (.75,2.5) (1,2) (1.5,1.75)
brightness              HSV value ``V + c`` (clipped), hue and saturation kept; c = .05 .1 .15 .2 .3
contrast                ``(x - m) c + m``, m the image's mean per channel; c = .75 .5 .4 .3 .15
elastic_transform       a random affine (three points at the centre +-side/3 moved by up to
                        ``t`` side lengths; bilinear, border: reflect-101), then a displacement field
                        of uniform noise in [-1, 1] smoothed by a Gaussian of sigma ``s`` side
                        lengths (truncated at 3 sigma, border: reflect) times ``a`` side lengths
                        (bilinear, border: reflect); (a, s, t) = (0,0,.08) (.05,.2,.07) (.08,.06,.06)
                        (.1,.04,.05) (.1,.03,.03)
pixelate                box downsampling to ``int(side c)`` pixels and box upsampling back (PIL);
                        c = .95 .9 .85 .75 .65
jpeg_compression        PIL JPEG at quality c; c = 80 65 58 50 40
occlusion               (not in CIFAR-10-C: the study's occlusion case) the image is cut into a 4x4
                        grid of square patches and a random c of the 16 are covered, each with
                        mid-grey or with uniform noise (equal odds); c = 2 4 6 8 10 (12.5 % to
                        62.5 % of the image)
======================  ==========================================================================

Every corruption ends, like the reference, by clipping to [0, 1] and truncating to 8 bits
(``np.uint8(255 x)``), except motion blur, whose ImageMagick output is rounded.

Lengths in pixels (blur sigmas and radii, the neighbour distance of glass blur, motion radius
and sigma) are the reference's for 32-px images and scale with ``side / 32`` for other image
sizes (the elastic parameters are side fractions already); noise is per pixel at every size.

Severity order: the tables make the pixel difference to the clean image grow from severity 1
to 5 for every corruption but four, which follow their tables instead: motion blur's severities
3 and 4 (radius 6 and 8, both sigma 2) differ only by taps weighing < 0.3 %; frost's image weight
falls from .9 to .85 between severities 3 and 4 with the same frost weight, which darkens the
blend towards the clean image although the frost's share grows; glass blur's severities 4 and 5
repeat 2 and 3 with a second pass; elastic's affine part shrinks (.08 to .03 of the side) while
its fine displacement grows, so its pixel difference falls with severity.

Deviations from the reference, and why:

* **motion blur** and snow's motion blur: the reference calls ImageMagick; here its
  ``MotionBlurImage`` kernel (see the table) is applied as a sum of shifted copies of the image.
* **impulse noise**: scikit-image's current salt-and-pepper (each value replaced with
  probability c) instead of the 2018 version, which drew ``ceil(c * size / 2)`` positions with
  replacement and never touched the last row, column or channel.
* **glass blur**: the reference's "swap" ``x[h, w], x[h', w'] = x[h', w'], x[h, w]`` acts on numpy
  views, so it copies the neighbour into ``x[h, w]`` and leaves the neighbour as it was; its
  offsets (``randint(-d, d)``, high end excluded) only reach up and left, pixels not yet visited
  in its bottom-right to top-left order, so each pass is exactly a one-shot gather from the
  unmodified image, done here for all pixels at once. (With d > 1, i.e. images of 48 px and
  more, the reference's in-place order would let some pixels read already-moved ones; the
  gather reads the pass's input.)
* **elastic transform, zoom**: OpenCV's ``warpAffine`` and SciPy's ``map_coordinates`` / ``zoom``
  are replaced by ``torch.nn.functional.grid_sample`` / ``interpolate`` with the same geometry and
  borders (float32; OpenCV interpolates with 5-bit fixed-point weights).
* Randomness comes from a numpy Generator seeded by (seed, corruption) and drawn for the whole
  batch at once; the reference draws image by image from the global generator, afresh for each
  severity. Here every severity of a seed draws the same noise, angles, crops and patches
  (common random numbers, as the invariance probes do), so severities differ in strength only
  and the accuracy-vs-severity curve is not blurred by new draws at each step.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import io
import math
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from sempairs.data import cache
from sempairs.data.store import ImageStore
from sempairs.errors import MissingPackage

# Bump when a corruption changes, so cached corrupted sets are rebuilt.
VERSION = 2  # 2: frost blends CIFAR-10-C's photographs (was: synthetic textures)
SEVERITIES = (1, 2, 3, 4, 5)
# Images corrupted at a time: bounds the memory of the float intermediates.
CHUNK = 2048

Corruption = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]


# ----------------------------------------------------------------------------- conversions


def _scale(images: np.ndarray) -> float:
    """Pixel lengths of the 32-px tables are multiplied by this."""
    return min(images.shape[1:3]) / 32


def _float(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float32 (N, 3, H, W) in [0, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255)


def _uint8(x: torch.Tensor | np.ndarray, rounded: bool = False) -> np.ndarray:
    """[0, 1] floats -> uint8, clipped and truncated (``np.uint8(255 x)``) or rounded; tensors are (N, 3, H, W)."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    else:
        x = x.permute(0, 2, 3, 1)
    x = x.clamp(0, 1) * 255
    return (x.round() if rounded else x).to(torch.uint8).contiguous().numpy()


def _quantised(x: torch.Tensor, rounded: bool = False) -> torch.Tensor:
    """``x`` stored as 8 bits and read back (truncated or rounded)."""
    x = x.clamp(0, 1) * 255
    return (x.round() if rounded else x.floor()) / 255


# ----------------------------------------------------------------------------- filters


def _border_index(n: int, pad: int, mode: str) -> torch.Tensor:
    """Source indices of a size-``n`` axis padded by ``pad`` on both sides.

    ``edge`` repeats the end values, ``reflect101`` mirrors about them (``dcb|abcd|cba``: OpenCV's
    default, torch's ``reflect``), ``reflect`` mirrors about the edges (``cba|abcd|dcb``: SciPy's).
    """
    i = torch.arange(-pad, n + pad)
    if mode == "edge" or n == 1:
        return i.clamp(0, n - 1)
    if mode == "reflect101":
        period = 2 * (n - 1)
        i = i % period
        return torch.where(i > n - 1, period - i, i)
    if mode == "reflect":
        i = i % (2 * n)
        return torch.where(i >= n, 2 * n - 1 - i, i)
    raise ValueError(f"unknown border mode {mode!r}")


def _filter2d(x: torch.Tensor, kernel: torch.Tensor, mode: str) -> torch.Tensor:
    """Correlate every channel of ``x`` (N, C, H, W) with ``kernel`` (kh, kw), odd sizes, padded by ``mode``."""
    kh, kw = kernel.shape
    h, w = x.shape[-2:]
    padded = x.index_select(-2, _border_index(h, kh // 2, mode)).index_select(-1, _border_index(w, kw // 2, mode))
    weight = kernel.to(x.dtype).expand(x.shape[1], 1, kh, kw)
    return F.conv2d(padded, weight, groups=x.shape[1])


def _gaussian_kernel(sigma: float, truncate: float) -> torch.Tensor:
    """Normalised 1-D Gaussian of radius ``int(truncate * sigma + 0.5)`` (SciPy's ``gaussian_filter``)."""
    radius = int(truncate * sigma + 0.5)
    if radius == 0:
        return torch.ones(1)
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return (k / k.sum()).float()


def _gaussian_blur(x: torch.Tensor, sigma: float, mode: str = "edge", truncate: float = 4.0) -> torch.Tensor:
    """Separable Gaussian blur of the last two axes (scikit-image's ``gaussian``: border ``nearest``, 4 sigma)."""
    k = _gaussian_kernel(sigma, truncate)
    if len(k) == 1:
        return x
    return _filter2d(_filter2d(x, k[None, :], mode), k[:, None], mode)


def _disk(radius: float, alias_blur: float) -> torch.Tensor:
    """The reference's defocus kernel: a normalised disk, blurred by a small Gaussian, zero rows and columns cropped."""
    half, span = (8, 1) if radius <= 8 else (math.ceil(radius), 2)  # OpenCV's 3x3 or 5x5 Gaussian
    t = torch.arange(-half, half + 1, dtype=torch.float64)
    disk = ((t[:, None] ** 2 + t[None, :] ** 2) <= radius**2).double()
    disk /= disk.sum()
    k = torch.exp(-0.5 * (torch.arange(-span, span + 1, dtype=torch.float64) / alias_blur) ** 2)
    k /= k.sum()
    kernel = _filter2d(_filter2d(disk[None, None], k[None, :], "reflect101"), k[:, None], "reflect101")[0, 0]
    rows = torch.nonzero(kernel.abs().sum(1)).flatten()  # the kernel is symmetric: one box for both axes
    lo, hi = int(rows.min()), int(rows.max()) + 1
    return kernel[lo:hi, lo:hi].float()


def _motion_blur(x: torch.Tensor, radius: float, sigma: float, angles: np.ndarray) -> torch.Tensor:
    """ImageMagick's ``MotionBlurImage`` of each image of ``x`` (N, C, H, W) at its angle (degrees)."""
    width = 2 * math.ceil(radius) + 1
    taps = np.arange(width)
    weights = np.exp(-(taps**2) / (2 * sigma**2))
    weights /= weights.sum()
    rad = np.deg2rad(angles)[:, None]
    dx = torch.from_numpy(np.ceil(taps * np.cos(rad) - 0.5).astype(np.int64))  # (N, width)
    dy = torch.from_numpy(np.ceil(taps * np.sin(rad) - 0.5).astype(np.int64))
    n, c, h, w = x.shape
    rows, cols = torch.arange(h), torch.arange(w)
    flat = x.reshape(n, c, h * w)
    out = torch.zeros_like(flat)
    for i, weight in enumerate(weights):
        r = (rows[None, :] + dy[:, i, None]).clamp(0, h - 1)
        q = (cols[None, :] + dx[:, i, None]).clamp(0, w - 1)
        index = (r[:, :, None] * w + q[:, None, :]).reshape(n, 1, h * w).expand(n, c, h * w)
        out += float(weight) * flat.gather(2, index)
    return out.reshape(n, c, h, w)


def _clipped_zoom(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Zoom into the centre by ``factor`` >= 1, keeping the size (SciPy ``zoom``, order 1, as the reference)."""
    out = x
    for axis in (-2, -1):
        n = x.shape[axis]
        crop = math.ceil(n / factor)
        out = out.narrow(axis, (n - crop) // 2, crop)
    crops = out.shape[-2:]
    size = [int(round(s * factor)) for s in crops]
    out = F.interpolate(out, size=size, mode="bilinear", align_corners=True)
    for axis, n in zip((-2, -1), x.shape[-2:]):
        out = out.narrow(axis, (out.shape[axis] - n) // 2, n)
    return out


def _grey(x: torch.Tensor) -> torch.Tensor:
    """Luma (N, 1, H, W) of RGB ``x`` (OpenCV's RGB2GRAY weights)."""
    return (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)


# ----------------------------------------------------------------------------- noise textures


def plasma_fractal(count: int, mapsize: int, decay: float, rng: np.random.Generator) -> np.ndarray:
    """``count`` diamond-square height maps (count, mapsize, mapsize) in [0, 1]; ``mapsize`` a power of two.

    The reference's version: corner 0, each new point the mean of its four neighbours plus
    ``wibble * U(-wibble, wibble)``, with ``wibble`` 100 divided by ``decay`` at every halving.
    """
    if mapsize & (mapsize - 1):
        raise ValueError(f"mapsize must be a power of two, got {mapsize}")
    m = np.zeros((count, mapsize, mapsize))
    step, wibble = mapsize, 100.0

    def wibbled(total):
        return total / 4 + wibble * rng.uniform(-wibble, wibble, total.shape)

    while step >= 2:
        half = step // 2
        corners = m[:, 0::step, 0::step]
        square = corners + np.roll(corners, -1, axis=1)
        square = square + np.roll(square, -1, axis=2)
        m[:, half::step, half::step] = wibbled(square)
        centres, corners = m[:, half::step, half::step], m[:, 0::step, 0::step]
        left = centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=2)
        top = centres + np.roll(centres, 1, axis=2) + corners + np.roll(corners, -1, axis=1)
        m[:, 0::step, half::step] = wibbled(left)
        m[:, half::step, 0::step] = wibbled(top)
        step, wibble = half, wibble / decay
    m -= m.min(axis=(1, 2), keepdims=True)
    return m / m.max(axis=(1, 2), keepdims=True)


FROST_FILES = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg")  # the reference draws from these five
FROST_SCALE = 0.2  # the reference shrinks the photographs by this for 32-px images


def frost_directory() -> Path:
    """The folder of CIFAR-10-C's frost photographs in the installed ``imagecorruptions`` package (not imported)."""
    spec = importlib.util.find_spec("imagecorruptions")
    if spec is None or not spec.submodule_search_locations:
        raise MissingPackage("frost blends CIFAR-10-C's frost photographs, which the imagecorruptions package ships: "
                          "pip install imagecorruptions (a sempairs dependency)")
    return Path(spec.submodule_search_locations[0]) / "frost"


@functools.lru_cache(maxsize=4)
def frost_textures(side: int) -> tuple[torch.Tensor, ...]:
    """The five frost photographs (3, H, W) in [0, 1], shrunk by ``FROST_SCALE * side / 32`` as OpenCV's
    ``resize`` (bilinear, no antialiasing) does and stored as 8 bits, as the reference reads them."""
    textures = []
    for name in FROST_FILES:
        path = frost_directory() / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: reinstall imagecorruptions (pip install --force-reinstall imagecorruptions)")
        photo = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)[None].float()
        small = F.interpolate(photo, scale_factor=FROST_SCALE * side / 32, mode="bilinear", align_corners=False,
                              recompute_scale_factor=False)
        textures.append(small[0].round().clamp(0, 255) / 255)
    return tuple(textures)


# ----------------------------------------------------------------------------- the corruptions


def _table(severity: int, values: list):
    return values[severity - 1]


def gaussian_noise(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Additive Gaussian noise."""
    c = _table(severity, [0.04, 0.06, 0.08, 0.09, 0.10])
    return _uint8(images / np.float32(255) + c * rng.standard_normal(images.shape, dtype=np.float32))


def shot_noise(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Poisson (photon) noise."""
    c = _table(severity, [500, 250, 100, 75, 50])
    return _uint8((rng.poisson(images * (c / 255)) / c).astype(np.float32))


def impulse_noise(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Salt-and-pepper noise on a share ``c`` of the values."""
    c = _table(severity, [0.01, 0.02, 0.03, 0.05, 0.07])
    flipped = rng.random(images.shape, dtype=np.float32) < c
    salt = rng.random(images.shape, dtype=np.float32) < 0.5
    out = images.copy()
    out[flipped & salt] = 255
    out[flipped & ~salt] = 0
    return out


def defocus_blur(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Convolution with an antialiased disk."""
    radius, alias = _table(severity, [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)])
    s = _scale(images)
    return _uint8(_filter2d(_float(images), _disk(radius * s, alias * s), "reflect101"))


def glass_blur(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian blur, each inner pixel replaced by a random neighbour, Gaussian blur."""
    sigma, delta, passes = _table(severity, [(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)])
    sigma, delta = sigma * _scale(images), max(1, round(delta * _scale(images)))
    x = _uint8(_gaussian_blur(_float(images), sigma))
    n, h, w, _ = x.shape
    rows, cols = np.arange(delta + 1, h - delta + 1), np.arange(delta + 1, w - delta + 1)
    every = np.arange(n)[:, None, None]
    for _ in range(passes):
        dy, dx = rng.integers(-delta, delta, size=(2, n, len(rows), len(cols)))
        x[:, rows[:, None], cols[None, :]] = x[every, rows[None, :, None] + dy, cols[None, None, :] + dx]
    return _uint8(_gaussian_blur(_float(x), sigma))


def motion_blur(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Blur along a line at a random angle in [-45, 45] degrees."""
    radius, sigma = _table(severity, [(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)])
    s = _scale(images)
    angles = rng.uniform(-45, 45, len(images))
    return _uint8(_motion_blur(_float(images), radius * s, sigma * s, angles), rounded=True)


def _zoom_factors(severity: int) -> np.ndarray:
    return np.arange(1, _table(severity, [1.06, 1.11, 1.16, 1.21, 1.26]), 0.01)


def zoom_blur(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Mean of centre zooms (the reference counts the unzoomed image twice: factor 1 is in its list)."""
    x = _float(images)
    factors = _zoom_factors(severity)
    total = x.clone()
    for factor in factors:
        total += _clipped_zoom(x, float(factor))
    return _uint8(total / (len(factors) + 1))


def snow(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Falling snow: a thresholded, zoomed, motion-blurred noise layer over a whitened image."""
    mean, std, zoom, threshold, radius, sigma, blend = _table(severity, [
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9), (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85), (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)])
    x = _float(images)
    n, _, h, w = x.shape
    layer = torch.from_numpy(rng.normal(mean, std, (n, 1, h, w)).astype(np.float32))
    layer = _clipped_zoom(layer, zoom)
    layer = _quantised(torch.where(layer < threshold, 0.0, layer))
    s = _scale(images)
    layer = _quantised(_motion_blur(layer, radius * s, sigma * s, rng.uniform(-135, -45, n)), rounded=True)
    x = blend * x + (1 - blend) * torch.maximum(x, _grey(x) * 1.5 + 0.5)
    return _uint8(x + layer + layer.flip(-2, -1))


def frost(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Blend with a random crop of one of CIFAR-10-C's five frost photographs."""
    a, b = _table(severity, [(1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)])
    n, h, w, _ = images.shape
    textures = frost_textures(min(h, w))
    pick = rng.integers(len(textures), size=n)
    tops = rng.integers(0, [textures[k].shape[1] - h for k in pick])
    lefts = rng.integers(0, [textures[k].shape[2] - w for k in pick])
    crops = torch.stack([textures[k][:, t : t + h, q : q + w] for k, t, q in zip(pick, tops, lefts)])
    return _uint8(a * _float(images) + b * crops)


def fog(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Add a plasma-fractal haze, rescaled to keep the image's maximum."""
    c, decay = _table(severity, [(0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)])
    n, h, w, _ = images.shape
    mapsize = 1 << (max(h, w) - 1).bit_length()
    haze = plasma_fractal(n, mapsize, decay, rng)[:, :h, :w, None].astype(np.float32)
    x = images / np.float32(255)
    top = x.max(axis=(1, 2, 3), keepdims=True)
    return _uint8((x + c * haze) * top / (top + c))


def brightness(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """HSV value plus ``c``: every channel scaled by ``V' / V`` (a black pixel becomes grey ``V'``)."""
    c = _table(severity, [0.05, 0.1, 0.15, 0.2, 0.3])
    x = images / np.float32(255)
    value = x.max(axis=-1, keepdims=True)
    lifted = np.minimum(value + np.float32(c), 1)
    return _uint8(np.where(value > 0, x * (lifted / np.maximum(value, 1e-12)), lifted))


def contrast(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Pull every channel towards its mean."""
    c = _table(severity, [0.75, 0.5, 0.4, 0.3, 0.15])
    x = images / np.float32(255)
    mean = x.mean(axis=(1, 2), keepdims=True)
    return _uint8((x - mean) * np.float32(c) + mean)


def _pixel_grid(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    rows, cols = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    return cols, rows


def _sample(x: torch.Tensor, cols: torch.Tensor, rows: torch.Tensor, align_corners: bool) -> torch.Tensor:
    """Bilinear samples of ``x`` at pixel coordinates (N, H, W), mirrored at the border (see ``grid_sample``)."""
    h, w = x.shape[-2:]
    if align_corners:  # reflect about the border pixels' centres: reflect-101
        grid = torch.stack([2 * cols / (w - 1) - 1, 2 * rows / (h - 1) - 1], dim=-1)
    else:  # reflect about the image edges: SciPy's reflect
        grid = torch.stack([(2 * cols + 1) / w - 1, (2 * rows + 1) / h - 1], dim=-1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=align_corners)


def elastic_transform(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Random affine warp, then a smoothed random displacement field."""
    n, h, w, _ = images.shape
    side = min(h, w)
    alpha, sigma, shift = (side * f for f in _table(severity, [(0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06),
                                                               (0.1, 0.04, 0.05), (0.1, 0.03, 0.03)]))
    cx, cy, third = h // 2, w // 2, side // 3  # the reference's (x, y) centre is (H // 2, W // 2)
    src = np.array([[cx + third, cy + third], [cx + third, cy - third], [cx - third, cy - third]], dtype=np.float64)
    dst = src + rng.uniform(-shift, shift, size=(n, 3, 2))
    # warpAffine samples the source at the inverse map, the affine taking the moved points back to the originals
    inverse = np.linalg.solve(np.concatenate([dst, np.ones((n, 3, 1))], axis=2), np.broadcast_to(src, (n, 3, 2)))
    inverse = torch.from_numpy(inverse).float()  # (N, 3, 2): [x y 1] @ inverse = source (x, y)
    cols, rows = _pixel_grid(h, w)
    points = torch.stack([cols, rows, torch.ones_like(cols)], dim=-1).reshape(1, h * w, 3)
    source = (points @ inverse).reshape(n, h, w, 2)
    x = _sample(_float(images), source[..., 0], source[..., 1], align_corners=True)
    noise = torch.from_numpy(rng.uniform(-1, 1, size=(n, 2, h, w)).astype(np.float32))
    if alpha > 0:
        dx, dy = (_gaussian_blur(noise, sigma, mode="reflect", truncate=3.0) * alpha).unbind(1)
        x = _sample(x, cols + dx, rows + dy, align_corners=False)
    return _uint8(x)


def pixelate(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Box downsampling and upsampling (PIL)."""
    c = _table(severity, [0.95, 0.9, 0.85, 0.75, 0.65])
    h, w = images.shape[1:3]
    box = Image.Resampling.BOX
    return np.stack([np.asarray(Image.fromarray(im).resize((int(w * c), int(h * c)), box).resize((w, h), box))
                     for im in images])


def jpeg_compression(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """JPEG encoding and decoding (PIL)."""
    quality = _table(severity, [80, 65, 58, 50, 40])
    out = np.empty_like(images)
    for i, im in enumerate(images):
        buffer = io.BytesIO()
        Image.fromarray(im).save(buffer, "JPEG", quality=quality)
        out[i] = np.asarray(Image.open(buffer).convert("RGB"))
    return out


OCCLUSION_GRID = 4


def occlusion(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Cover random patches of a 4x4 grid with grey or noise."""
    covered = _table(severity, [2, 4, 6, 8, 10])
    n, h, w, _ = images.shape
    cells = OCCLUSION_GRID**2
    order = np.argsort(rng.random((n, cells)), axis=1)
    chosen = np.zeros((n, cells), dtype=bool)
    np.put_along_axis(chosen, order[:, :covered], True, axis=1)
    noisy = rng.random((n, cells)) < 0.5
    row_cell = np.searchsorted(np.round(np.linspace(0, h, OCCLUSION_GRID + 1))[1:], np.arange(h), side="right")
    col_cell = np.searchsorted(np.round(np.linspace(0, w, OCCLUSION_GRID + 1))[1:], np.arange(w), side="right")
    cell = (row_cell[:, None] * OCCLUSION_GRID + col_cell[None, :]).ravel()
    grey_mask = (chosen & ~noisy)[:, cell].reshape(n, h, w, 1)
    noise_mask = (chosen & noisy)[:, cell].reshape(n, h, w, 1)
    noise = rng.integers(0, 256, size=images.shape, dtype=np.uint8)
    return np.where(grey_mask, np.uint8(128), np.where(noise_mask, noise, images))


STANDARD_CORRUPTIONS = ("gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
                        "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
                        "jpeg_compression")
CORRUPTIONS: dict[str, Corruption] = {name: globals()[name] for name in (*STANDARD_CORRUPTIONS, "occlusion")}
# Corruptions whose result depends on the seed.
RANDOM_CORRUPTIONS = ("gaussian_noise", "shot_noise", "impulse_noise", "glass_blur", "motion_blur", "snow", "frost",
                      "fog", "elastic_transform", "occlusion")


# ----------------------------------------------------------------------------- entry points


def _check(name: str, severity: int) -> None:
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; the corruptions are: {', '.join(CORRUPTIONS)}")
    if severity not in (0, *SEVERITIES):
        raise ValueError(f"severity must be 0 (none) or 1..5, got {severity}")


def corrupt(images: np.ndarray, name: str, severity: int, seed: int = 0) -> np.ndarray:
    """``images`` (uint8, N x H x W x 3) under corruption ``name`` at ``severity`` (0: a copy of the input).

    Deterministic: the random draws come from a numpy Generator seeded by (seed, name), the same
    for every severity, so the severities of a seed differ in strength only (same noise, angles,
    crops, patches).
    """
    _check(name, severity)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
    if severity == 0 or len(images) == 0:
        return images.copy()
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    fn = CORRUPTIONS[name]
    return np.concatenate([fn(np.ascontiguousarray(images[i : i + CHUNK]), severity, rng)
                           for i in range(0, len(images), CHUNK)])


def corrupted_key(store: ImageStore, name: str, severity: int, seed: int) -> str:
    """Cache key of ``store`` corrupted: its source (path, size, mtime), split, image size and ids, the corruption."""
    source = Path(store.source)
    fingerprint = cache.fingerprint(source) if source.exists() else [store.source]
    ids = hashlib.sha256("\n".join(store.ids).encode()).hexdigest()
    return cache.cache_key(fingerprint, store.split, store.size, images=len(store), ids=ids, corruption=name,
                           severity=severity, seed=seed, corruptions_version=VERSION)


def corrupted_store(store: ImageStore, name: str, severity: int, seed: int = 0, use_cache: bool = True) -> ImageStore:
    """``store`` with its images corrupted (labels, ids and classes kept); severity 0 gives ``store`` itself.

    The result's split is ``<split>+<name>-<severity>-seed<seed>``. With ``use_cache`` it is read
    from / written to the dataset cache (:mod:`sempairs.data.cache`), keyed by
    :func:`corrupted_key`, so each set is generated once.
    """
    _check(name, severity)
    if severity == 0:
        return store
    key = corrupted_key(store, name, severity, seed) if use_cache else None
    if key is not None:
        cached = cache.load_store(key)
        if cached is not None:
            return cached
    out = ImageStore(images=corrupt(store.images, name, severity, seed), labels=store.labels,
                     class_names=list(store.class_names), ids=list(store.ids), source=store.source,
                     split=f"{store.split}+{name}-{severity}-seed{seed}")
    if key is not None:
        cache.save_store(key, out)
    return out
