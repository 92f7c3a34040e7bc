"""Benchmark: building the dataset cache (images/s, checksum cost) and its memory for a store larger than allowed.

Run from the repository root::

    python -m bench.cache_build speed ../shared/data/cifar10-jpeg.zip --workers 1 2 --repeats 3
    python -m bench.cache_build synth /tmp/synth.zip --n 300000          # a zip of n small PNGs (8 px)
    python -m bench.cache_build capped /tmp/synth.zip --size 64 --workers 2

``speed`` builds the cache of the train split at 32 px into a fresh cache folder per repeat and
reports images/s (wall) and CPU ms per image per worker count (median over repeats), then the cost of the checksum check
and of opening the entry. ``capped`` builds a store memory-mapped and reports how far the peak
resident memory of this process rises during the build (VmHWM, reset before it) against the
store's size. (An address-space cap, RLIMIT_AS, is the wrong tool: mapping the finished entry
takes address space as large as the store, though not RAM.)
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import statistics
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image


def _fresh_cache() -> str:
    folder = tempfile.mkdtemp(prefix="sempairs-bench-cache-")
    os.environ["SEMPAIRS_CACHE"] = folder
    return folder


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its finished children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def speed(source: str, workers: list[int], repeats: int, size: int) -> None:
    from sempairs.data import cache
    from sempairs.data.registry import load_dataset

    for w in workers:
        rates, cpu = [], []
        for _ in range(repeats):
            _fresh_cache()
            start, cpu_start = time.perf_counter(), _cpu_seconds()
            store = load_dataset(source, "train", size=size, memory="mmap", workers=w)
            rates.append(len(store) / (time.perf_counter() - start))
            cpu.append(1000 * (_cpu_seconds() - cpu_start) / len(store))
        print(f"workers={w}: {statistics.median(rates):.0f} images/s wall (median of {', '.join(f'{r:.0f}' for r in rates)}), "
              f"{statistics.median(cpu):.3f} CPU ms/image (this process and its workers)")
    (npy,) = cache.stores_dir().glob("*.npy")
    mb = npy.stat().st_size / 1e6
    for what, action in [("checksum", lambda: cache.file_checksum(npy)),
                         ("open ram (checksum included)", lambda: cache.load_store(npy.stem, "ram")),
                         ("open mmap (checksum included)", lambda: cache.load_store(npy.stem, "mmap"))]:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            action()
            times.append(time.perf_counter() - start)
        print(f"{what}: {statistics.median(times):.3f} s for {mb:.0f} MB (page cache warm)")


def synth(path: str, n: int, classes: int = 100) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(n):
            img = np.add.outer(np.arange(8), np.arange(8))[..., None] * (i % 7 + 1) + np.array([0, i % 251, 2 * i % 253])
            buf = io.BytesIO()
            Image.fromarray(img.astype(np.uint8)).save(buf, format="PNG")
            zf.writestr(f"train/c{i % classes:03d}/{i:07d}.png", buf.getvalue())
    print(f"{path}: {n} PNGs, {Path(path).stat().st_size / 1e6:.0f} MB")


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def capped(source: str, size: int, workers: int) -> None:
    from sempairs.data.registry import load_dataset

    _fresh_cache()
    Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) := what is resident now
    before = _status("VmRSS")
    start = time.perf_counter()
    store = load_dataset(source, "train", size=size, memory="mmap", workers=workers)
    seconds = time.perf_counter() - start
    grown = _status("VmHWM") - before
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    print(f"{len(store)} images at {size} px: store {store.images.nbytes / 2**30:.2f} GiB, built in {seconds:.0f} s "
          f"({len(store) / seconds:.0f} images/s) with {workers} workers; peak RSS of this process {grown / 2**20:.0f} MiB "
          f"above the {before / 2**20:.0f} MiB resident before; largest worker RSS {children / 2**20:.0f} MiB "
          "(pages shared with this process, imports included)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("speed")
    p.add_argument("source")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--size", type=int, default=32)
    p = sub.add_parser("synth")
    p.add_argument("path")
    p.add_argument("--n", type=int, default=300_000)
    p = sub.add_parser("capped")
    p.add_argument("source")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if args.command == "speed":
        speed(args.source, args.workers, args.repeats, args.size)
    elif args.command == "synth":
        synth(args.path, args.n)
    else:
        capped(args.source, args.size, args.workers)


if __name__ == "__main__":
    main()
