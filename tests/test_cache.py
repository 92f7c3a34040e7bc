"""The dataset cache at scale and under damage: a checksum catches a damaged entry, which is rebuilt;
a cold cache is decoded once however many processes ask; a build streams to disk, holding chunks,
not the store; a store that cannot fit is refused before it is decoded."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sempairs.data import cache, memory
from sempairs.data.memory import NoRoomError
from sempairs.data.registry import load_dataset
from sempairs.errors import SempairsWarning

HERE = Path(__file__).resolve().parent


def _entry(isolated_cache: Path) -> Path:
    (npy,) = (isolated_cache / "stores").glob("*.npy")
    return npy


def _load_quietly(path, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error", SempairsWarning)
        return load_dataset(str(path), "train", size=16, **kwargs)


@pytest.mark.parametrize("damage", ["flip a byte", "truncate"])
def test_a_damaged_entry_is_reported_and_rebuilt(tiny_cifar_zip, isolated_cache, damage):
    first = _load_quietly(tiny_cifar_zip)
    npy = _entry(isolated_cache)
    data = bytearray(npy.read_bytes())
    if damage == "flip a byte":
        data[-100] ^= 0xFF  # same size, one pixel changed
    else:
        del data[len(data) // 2 :]
    npy.write_bytes(bytes(data))
    with pytest.warns(SempairsWarning, match=r"damaged cache entry .*(checksum|bytes).*rebuilt"):
        again = load_dataset(str(tiny_cifar_zip), "train", size=16)
    np.testing.assert_array_equal(again.images, first.images)
    np.testing.assert_array_equal(_load_quietly(tiny_cifar_zip).images, first.images)  # rebuilt: whole again
    meta = json.loads(npy.with_suffix(".json").read_text())
    assert meta["checksum"] == cache.file_checksum(npy) and meta["file_bytes"] == npy.stat().st_size


def test_an_entry_is_the_images_it_holds_and_its_checksum_is_the_files_crc32(tiny_cifar_zip, isolated_cache):
    import zlib

    store = _load_quietly(tiny_cifar_zip, memory="mmap")
    npy = _entry(isolated_cache)
    np.testing.assert_array_equal(np.load(npy), store.images)
    assert cache.file_checksum(npy) == f"crc32:{zlib.crc32(npy.read_bytes()):08x}"


def _zip_of_images(path: Path, n: int, side: int = 8, classes: int = 2) -> Path:
    """A zip of ``n`` small PNGs (train/c<k>/<i>.png), each a distinct smooth pattern."""
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(n):
            img = (np.add.outer(np.arange(side), np.arange(side))[..., None] * (i % 7 + 1) + [0, i % 251, 2 * i % 253])
            buf = io.BytesIO()
            Image.fromarray(img.astype(np.uint8)).save(buf, format="PNG")
            zf.writestr(f"train/c{i % classes}/{i:05d}.png", buf.getvalue())
    return path


def _python(*args: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(HERE.parent), "OMP_NUM_THREADS": "1", **env})


def test_processes_loading_one_cold_entry_together_decode_it_once(tmp_path):
    """Two separate jobs on one empty cache: the entry's file lock lets one decode; the other waits and reads it."""
    source = _zip_of_images(tmp_path / "a.zip", 300)
    code = ("import sys; from sempairs.data.registry import load_dataset; "
            "s = load_dataset(sys.argv[1], size=16, memory='mmap'); print(int(s.images.sum()), len(s))")
    procs = [_python("-c", code, str(source), SEMPAIRS_CACHE=str(tmp_path / "cache")) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    decodes = sum(err.count("decoding 300 images") for _, err in outputs)
    assert decodes == 1, outputs
    assert outputs[0][0] == outputs[1][0]
    npy = _entry(tmp_path / "cache")
    assert json.loads(npy.with_suffix(".json").read_text())["checksum"] == cache.file_checksum(npy)


def test_a_store_larger_than_the_memory_the_build_holds_is_streamed_to_disk_and_trained_from(tmp_path):
    """The build's peak memory stays far below the store (chunks of 1 MiB); opening it into RAM shows the
    measurement sees a store in memory; a run trains from the memory-mapped entry."""
    source = _zip_of_images(tmp_path / "big.zip", 3000)
    out = tmp_path / "runs" / "memory.json"
    out.parent.mkdir()
    proc = _python(str(HERE / "build_under_watch.py"), str(source), "64", str(out), SEMPAIRS_CACHE=str(tmp_path / "cache"))
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-3000:]
    seen = json.loads(out.read_text())
    assert seen["store_bytes"] == 3000 * 64 * 64 * 3  # 37 MB
    assert seen["mapped"] == "memmap"
    assert seen["build_peak"] < seen["store_bytes"] / 4, seen
    assert seen["ram_peak"] > seen["store_bytes"] * 0.9, seen
    assert np.isfinite(seen["loss"])


def test_a_store_larger_than_the_ram_is_refused_before_decoding(tiny_cifar_zip, isolated_cache, monkeypatch):
    monkeypatch.setattr(memory, "available_ram", lambda: 10_000_000)  # 10 MB
    monkeypatch.setattr(cache, "available_ram", lambda: 10_000_000)
    decoded = []
    monkeypatch.setattr("sempairs.data.sources.decode_image", lambda *a, **k: decoded.append(1))
    with pytest.raises(NoRoomError, match=r"need 0\.\d+ GiB of RAM, 0\.01 GiB is available\. Fix: .*data\.memory=mmap"):
        load_dataset(str(tiny_cifar_zip), "train", size=256, memory="ram")
    assert not decoded
    # mapped, the same store needs disk, not RAM
    monkeypatch.setattr(memory.shutil, "disk_usage", lambda folder: type("U", (), {"free": 1000})())
    with pytest.raises(NoRoomError, match=r"of disk in .*stores, 0\.00 GiB is free\. Fix: set SEMPAIRS_CACHE"):
        load_dataset(str(tiny_cifar_zip), "train", size=256, memory="mmap")
    assert not decoded
