"""sempairs.data: image folders, zips, npz, torchvision layouts, resizing, selection, cache, discovery, named
datasets, errors."""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sempairs.data import cache, sources
from sempairs.data.datasets import DATASETS, NamedDataset
from sempairs.data.registry import find_dataset, list_datasets, load_dataset
from sempairs.data.sources import DataError, read_image_folder, read_image_zip, read_npz
from sempairs.data.store import ImageStore

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def pixels(seed: int, n: int, h: int, w: int | None = None) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w or h, 3), dtype=np.uint8)


def write_png(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)


@pytest.fixture
def png_folder(tmp_path) -> tuple[Path, dict[str, np.ndarray]]:
    """train: dog 3, ant 2, cat 1 images; test: cat 1, dog 1. PNG, so pixels survive exactly."""
    root, written = tmp_path / "pngs", {}
    imgs = pixels(0, 8, 8)
    layout = ["train/dog/2.png", "train/dog/0.png", "train/dog/1.png", "train/ant/b.png", "train/ant/a.png",
              "train/cat/x.png", "test/cat/y.png", "test/dog/z.png"]
    for img, rel in zip(imgs, layout):
        write_png(root / rel, img)
        written[rel] = img
    return root, written


def jpeg_member(zip_path: Path, member: str) -> np.ndarray:
    with zipfile.ZipFile(zip_path) as zf:
        return np.asarray(Image.open(io.BytesIO(zf.read(member))).convert("RGB"))


# --------------------------------------------------------------------------- image folders


def test_folder_sorted_classes_paths_and_exact_pixels(png_folder):
    root, written = png_folder
    store = read_image_folder(root, "train")
    assert store.class_names == ["ant", "cat", "dog"]
    assert store.ids == ["train/ant/a.png", "train/ant/b.png", "train/cat/x.png",
                         "train/dog/0.png", "train/dog/1.png", "train/dog/2.png"]
    assert store.labels.tolist() == [0, 0, 1, 2, 2, 2]
    assert store.split == "train" and store.images.shape == (6, 8, 8, 3)
    for i, image_id in enumerate(store.ids):
        np.testing.assert_array_equal(store.images[i], written[image_id])
    test = read_image_folder(root, "test")
    assert test.ids == ["test/cat/y.png", "test/dog/z.png"]
    assert test.class_names == store.class_names and test.labels.tolist() == [1, 2]  # numbered as in train (no test ants)


def test_folder_without_split_level_is_train(tmp_path):
    imgs = pixels(1, 3, 6)
    for img, rel in zip(imgs, ["frog/1.png", "bird/0.png", "frog/0.png"]):
        write_png(tmp_path / "flat" / rel, img)
    store = read_image_folder(tmp_path / "flat", "train")
    assert store.ids == ["bird/0.png", "frog/0.png", "frog/1.png"]
    assert store.class_names == ["bird", "frog"] and store.labels.tolist() == [0, 1, 1]
    np.testing.assert_array_equal(store.images[2], imgs[0])
    with pytest.raises(DataError, match="no 'test' split folder"):
        read_image_folder(tmp_path / "flat", "test")


def test_loose_images_make_an_unlabelled_split(tmp_path):
    imgs = pixels(2, 2, 5)
    write_png(tmp_path / "d" / "unlabeled" / "b.png", imgs[0])
    write_png(tmp_path / "d" / "unlabeled" / "a.png", imgs[1])
    store = load_dataset(str(tmp_path / "d"), "unlabeled")
    assert store.labels is None and store.ids == ["unlabeled/a.png", "unlabeled/b.png"]
    np.testing.assert_array_equal(store.images, imgs[::-1])
    assert len(load_dataset(str(tmp_path / "d"), "unlabeled", limit_per_class=1)) == 1


# --------------------------------------------------------------------------- zips


def test_zip_matches_its_jpegs_and_label_counts(tiny_cifar_zip):
    store = read_image_zip(tiny_cifar_zip, "train")
    assert store.class_names == CIFAR10_CLASSES
    assert np.bincount(store.labels).tolist() == [20] * 10
    assert store.images.shape == (200, 32, 32, 3)
    for i in (0, 57, 199):
        assert store.ids[i].startswith(f"train/{CIFAR10_CLASSES[store.labels[i]]}/")
        np.testing.assert_array_equal(store.images[i], jpeg_member(tiny_cifar_zip, store.ids[i]))
    test = read_image_zip(tiny_cifar_zip, "test")
    assert np.bincount(test.labels).tolist() == [10] * 10 and test.ids[0] == "test/airplane/0000.jpg"


def test_zip_with_top_folder_gives_the_same_store(tiny_cifar_zip, tmp_path):
    prefixed = tmp_path / "prefixed.zip"
    with zipfile.ZipFile(tiny_cifar_zip) as src, zipfile.ZipFile(prefixed, "w") as out:
        out.writestr("CIFAR-10-images/", b"")
        for name in src.namelist():
            out.writestr(f"CIFAR-10-images/{name}", src.read(name))
        out.writestr("CIFAR-10-images/.hidden.jpg", b"junk")
        out.writestr("__MACOSX/CIFAR-10-images/._x.jpg", b"junk")
    plain, top = read_image_zip(tiny_cifar_zip, "test"), read_image_zip(prefixed, "test")
    assert top.ids == plain.ids and top.ids[0] == "test/airplane/0000.jpg"
    np.testing.assert_array_equal(top.images, plain.images)
    np.testing.assert_array_equal(top.labels, plain.labels)


def test_worker_processes_decode_the_same_as_one_process(tiny_cifar_zip):
    serial = read_image_zip(tiny_cifar_zip, "train", size=16, workers=1)
    parallel = read_image_zip(tiny_cifar_zip, "train", size=16, workers=2)
    np.testing.assert_array_equal(parallel.images, serial.images)
    assert parallel.ids == serial.ids


def test_resize_to_16_is_pil_bicubic(tiny_cifar_zip):
    store = load_dataset(str(tiny_cifar_zip), "test", size=16)
    assert store.images.shape == (100, 16, 16, 3)
    native = Image.fromarray(jpeg_member(tiny_cifar_zip, store.ids[33]))
    np.testing.assert_array_equal(store.images[33], np.asarray(native.resize((16, 16), Image.Resampling.BICUBIC)))


def test_classes_and_limit_per_class(tiny_cifar_zip):
    store = load_dataset(str(tiny_cifar_zip), "train", classes=["dog", "cat"], limit_per_class=3)
    assert store.class_names == ["dog", "cat"]
    assert store.ids == [f"train/cat/{i:04d}.jpg" for i in range(3)] + [f"train/dog/{i:04d}.jpg" for i in range(3)]
    assert store.labels.tolist() == [1, 1, 1, 0, 0, 0]
    np.testing.assert_array_equal(store.images[4], jpeg_member(tiny_cifar_zip, "train/dog/0001.jpg"))
    with pytest.raises(DataError, match="no class 'unicorn'.*airplane"):
        load_dataset(str(tiny_cifar_zip), "train", classes=["unicorn"])


# --------------------------------------------------------------------------- npz


def test_npz_images_labels_class_names(tmp_path):
    imgs, labels = pixels(3, 5, 4), np.array([1, 0, 1, 2, 0])
    np.savez(tmp_path / "a.npz", images=imgs, labels=labels, class_names=np.array(["x", "y", "z"]))
    store = load_dataset(str(tmp_path / "a.npz"))
    np.testing.assert_array_equal(store.images, imgs)
    assert store.labels.tolist() == [1, 0, 1, 2, 0] and store.class_names == ["x", "y", "z"]
    assert store.ids == ["0", "1", "2", "3", "4"] and store.labels.dtype == np.int64
    with pytest.raises(DataError, match="no images for split 'test'.*x_test"):
        read_npz(tmp_path / "a.npz", "test")


def test_npz_split_keys_and_nchw(tmp_path):
    train, test = pixels(4, 4, 6), pixels(5, 3, 6)
    np.savez(tmp_path / "s.npz", x_train=train.transpose(0, 3, 1, 2), y_train=np.array([0, 1, 1, 0], np.uint8),
             x_test=test, y_test=np.array([1, 1, 0]))
    a, b = read_npz(tmp_path / "s.npz", "train"), read_npz(tmp_path / "s.npz", "test")
    np.testing.assert_array_equal(a.images, train)
    np.testing.assert_array_equal(b.images, test)
    assert a.labels.tolist() == [0, 1, 1, 0] and b.labels.tolist() == [1, 1, 0]
    assert a.class_names == ["0", "1"] and b.split == "test"
    resized = read_npz(tmp_path / "s.npz", "test", size=3)
    expected = np.asarray(Image.fromarray(test[2]).resize((3, 3), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(resized.images[2], expected)


def test_npz_errors_name_file_and_key(tmp_path):
    np.savez(tmp_path / "f.npz", images=np.zeros((2, 4, 4, 3), np.float32))
    with pytest.raises(DataError, match=r"f\.npz: key 'images' has dtype float32.*astype\(np\.uint8\)"):
        load_dataset(str(tmp_path / "f.npz"))
    np.savez(tmp_path / "g.npz", images=np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(DataError, match=r"g\.npz: key 'images' has shape \(2, 4, 4\)"):
        read_npz(tmp_path / "g.npz")
    np.savez(tmp_path / "h.npz", images=np.zeros((2, 4, 4, 3), np.uint8), labels=np.array([0, -3]))
    with pytest.raises(DataError, match=r"h\.npz: key 'labels' row 1 is -3"):
        read_npz(tmp_path / "h.npz")
    np.savez(tmp_path / "o.npz", images=np.zeros((1, 4, 4, 3), np.uint8), labels=np.array([0]),
             class_names=np.array(["a"], dtype=object))
    with pytest.raises(DataError, match=r"o\.npz: key 'class_names' cannot be read without pickle"):
        read_npz(tmp_path / "o.npz")


# --------------------------------------------------------------------------- torchvision layouts


@pytest.fixture
def no_md5(monkeypatch):
    """The hand-made torchvision folders below cannot match the official checksums."""
    import torchvision.datasets.cifar as cifar
    import torchvision.datasets.stl10 as stl10

    monkeypatch.setattr(cifar, "check_integrity", lambda *a, **k: True)
    monkeypatch.setattr(stl10, "check_integrity", lambda *a, **k: True)


def write_pickle(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=2))


def cifar_rows(imgs: np.ndarray) -> np.ndarray:
    """Images as the official CIFAR rows: 1024 red, 1024 green, 1024 blue values each."""
    return imgs.transpose(0, 3, 1, 2).reshape(len(imgs), -1)


def write_cifar10(root: Path) -> tuple[list[np.ndarray], np.ndarray]:
    """A tiny cifar-10-batches-py under ``root``: 2 images per train batch, 3 test images."""
    folder = root / "cifar-10-batches-py"
    batches = [pixels(10 + b, 2, 32) for b in range(5)]
    for b, imgs in enumerate(batches):
        write_pickle(folder / f"data_batch_{b + 1}", {"data": cifar_rows(imgs), "labels": [b, 9 - b]})
    test_imgs = pixels(20, 3, 32)
    write_pickle(folder / "test_batch", {"data": cifar_rows(test_imgs), "labels": [7, 3, 7]})
    write_pickle(folder / "batches.meta", {"label_names": CIFAR10_CLASSES})
    return batches, test_imgs


def test_cifar10_torchvision_folder(tmp_path, no_md5):
    folder = tmp_path / "cifar-10-batches-py"
    batches, test_imgs = write_cifar10(tmp_path)

    train = load_dataset("cifar10", "train", root=str(tmp_path))
    np.testing.assert_array_equal(train.images, np.concatenate(batches))
    assert train.labels.tolist() == [0, 9, 1, 8, 2, 7, 3, 6, 4, 5]
    assert train.class_names == CIFAR10_CLASSES and train.ids[:2] == ["0", "1"]
    test = load_dataset("cifar10", "test", size=16, root=str(tmp_path))
    expected = np.asarray(Image.fromarray(test_imgs[1]).resize((16, 16), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(test.images[1], expected)
    assert test.labels.tolist() == [7, 3, 7]
    assert find_dataset("cifar10", root=tmp_path) == folder
    assert load_dataset(str(folder), "test").labels.tolist() == [7, 3, 7]
    assert load_dataset(str(tmp_path), "test").labels.tolist() == [7, 3, 7]  # the torchvision root as a path
    with pytest.raises(DataError, match="no split 'unlabeled'"):
        load_dataset("cifar10", "unlabeled", root=str(tmp_path))


def test_cifar100_torchvision_folder(tmp_path, no_md5, monkeypatch):
    folder = tmp_path / "data" / "cifar-100-python"
    imgs, test_imgs = pixels(30, 4, 32), pixels(31, 2, 32)
    names = [f"c{i:02d}" for i in range(100)]
    write_pickle(folder / "train", {"data": cifar_rows(imgs), "fine_labels": [99, 0, 42, 42], "coarse_labels": [0] * 4})
    write_pickle(folder / "test", {"data": cifar_rows(test_imgs), "fine_labels": [5, 6], "coarse_labels": [0, 0]})
    write_pickle(folder / "meta", {"fine_label_names": names, "coarse_label_names": ["x"] * 20})
    monkeypatch.setenv("SEMPAIRS_DATA", str(tmp_path / "data"))

    train = load_dataset("CIFAR-100", "train")
    np.testing.assert_array_equal(train.images, imgs)
    assert train.labels.tolist() == [99, 0, 42, 42] and train.class_names == names
    assert load_dataset("cifar100", "test").labels.tolist() == [5, 6]
    two = load_dataset("cifar100", "train", classes=["c42", "c99"])
    assert two.labels.tolist() == [1, 0, 0] and two.ids == ["0", "2", "3"]


def write_stl(path: Path, imgs: np.ndarray) -> None:
    """Official STL-10 layout: per image 3 planes, each stored column by column."""
    path.write_bytes(np.ascontiguousarray(imgs.transpose(0, 3, 2, 1)).tobytes())


def test_stl10_torchvision_folder(tmp_path, no_md5):
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    train, test, unlabeled = pixels(40, 3, 96), pixels(41, 2, 96), pixels(42, 2, 96)
    write_stl(folder / "train_X.bin", train)
    (folder / "train_y.bin").write_bytes(bytes([1, 10, 4]))  # 1-based on disk
    write_stl(folder / "test_X.bin", test)
    (folder / "test_y.bin").write_bytes(bytes([2, 2]))
    write_stl(folder / "unlabeled_X.bin", unlabeled)
    names = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]
    (folder / "class_names.txt").write_text("\n".join(names) + "\n")

    store = load_dataset("stl10", "train", root=str(tmp_path))
    np.testing.assert_array_equal(store.images, train)
    assert store.labels.tolist() == [0, 9, 3] and store.class_names == names
    assert load_dataset("stl10", "test", root=str(tmp_path)).labels.tolist() == [1, 1]
    unl = load_dataset("stl10", "unlabeled", size=48, root=str(tmp_path))
    assert unl.labels is None and unl.images.shape == (2, 48, 48, 3)
    expected = np.asarray(Image.fromarray(unlabeled[0]).resize((48, 48), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(unl.images[0], expected)


def test_download_goes_to_root_or_the_cache(tmp_path, isolated_cache, no_md5, monkeypatch):
    calls = []

    def fake_download(name, root):
        calls.append((name, Path(root)))
        write_cifar10(Path(root))
        return Path(root) / "cifar-10-batches-py"

    monkeypatch.setattr(sources, "download_torchvision", fake_download)
    assert load_dataset("cifar10", "test", download=True, root=str(tmp_path / "r")).labels.tolist() == [7, 3, 7]
    assert load_dataset("cifar10", "test", download=True).labels.tolist() == [7, 3, 7]
    assert calls == [("cifar10", tmp_path / "r"), ("cifar10", isolated_cache)]
    assert find_dataset("cifar10") == isolated_cache / "cifar-10-batches-py"  # found there from now on


# --------------------------------------------------------------------------- cache


def test_second_load_comes_from_cache_without_decoding(tiny_cifar_zip, isolated_cache, monkeypatch):
    first = load_dataset(str(tiny_cifar_zip), "train", size=16)
    stored = sorted(p.suffix for p in (isolated_cache / "stores").iterdir())
    assert stored == [".json", ".npy"]

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(sources, "decode_image", no_decoding)
    again = load_dataset(str(tiny_cifar_zip), "train", size=16)
    np.testing.assert_array_equal(again.images, first.images)
    np.testing.assert_array_equal(again.labels, first.labels)
    assert again.ids == first.ids and again.class_names == first.class_names and again.source == first.source
    # a selection is cut from the cached full split
    cats = load_dataset(str(tiny_cifar_zip), "train", size=16, classes=["cat"], limit_per_class=2)
    assert cats.ids == ["train/cat/0000.jpg", "train/cat/0001.jpg"] and cats.labels.tolist() == [0, 0]
    # another size is another entry, so it must decode
    with pytest.raises(DataError, match="decoded although cached"):
        load_dataset(str(tiny_cifar_zip), "train", size=8)


def test_changed_source_or_unfinished_entry_is_not_used(tmp_path, isolated_cache):
    path = tmp_path / "a.npz"
    np.savez(path, images=pixels(6, 2, 4))
    assert load_dataset(str(path)).images.shape == (2, 4, 4, 3)
    np.savez(path, images=pixels(7, 3, 4))
    os.utime(path, ns=(1, 1))
    assert load_dataset(str(path)).images.shape == (3, 4, 4, 3)
    key = cache.cache_key(cache.fingerprint(path), "train", None, resize="squash")
    (isolated_cache / "stores" / f"{key}.json").unlink()  # as if killed between the two renames
    (isolated_cache / "stores" / f"{key}.npy").write_bytes(b"half written")
    np.testing.assert_array_equal(load_dataset(str(path)).images, pixels(7, 3, 4))


def test_cache_opens_images_memory_mapped_or_in_ram(isolated_cache):
    store = ImageStore(images=pixels(3, 5, 4), labels=np.arange(5) % 2, class_names=["a", "b"],
                               ids=[str(i) for i in range(5)], source="x.npz")
    cache.save_store("k", store)
    mapped, ram = cache.load_store("k", memory="mmap"), cache.load_store("k", memory="ram")
    assert isinstance(mapped.images, np.memmap) and not mapped.images.flags.writeable
    assert Path(mapped.images.filename) == isolated_cache / "stores" / "k.npy"
    assert not isinstance(ram.images, np.memmap) and ram.images.flags.writeable
    for loaded in (mapped, ram):
        np.testing.assert_array_equal(loaded.images, store.images)
        np.testing.assert_array_equal(loaded.labels, store.labels)
        assert loaded.ids == store.ids and loaded.class_names == store.class_names
    assert mapped.tensor().shape == (5, 3, 4, 4) and mapped.tensor().equal(ram.tensor())
    with pytest.raises(ValueError, match="data.memory must be one of auto, ram, mmap, got 'disk'"):
        cache.load_store("k", memory="disk")


def test_auto_maps_a_file_larger_than_a_share_of_the_available_ram(isolated_cache, monkeypatch):
    cache.save_store("k", ImageStore(images=pixels(4, 10, 8), labels=None, class_names=[],
                                             ids=[str(i) for i in range(10)], source="x.npz"))
    file_bytes = (isolated_cache / "stores" / "k.npy").stat().st_size
    monkeypatch.setattr(cache, "available_ram", lambda: int(file_bytes / cache.RAM_SHARE) - 1)
    assert isinstance(cache.load_store("k", memory="auto").images, np.memmap)
    monkeypatch.setattr(cache, "available_ram", lambda: int(file_bytes / cache.RAM_SHARE) + 1)
    assert not isinstance(cache.load_store("k", memory="auto").images, np.memmap)
    monkeypatch.setattr(cache, "available_ram", lambda: None)  # unknown: read into RAM
    assert not isinstance(cache.load_store("k", memory="auto").images, np.memmap)
    assert not cache.opens_mapped(10**15, "ram") and cache.opens_mapped(1, "mmap")


def test_available_ram_is_positive_and_at_most_the_total():
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert 0 < cache.available_ram() <= total


def test_load_dataset_memory_mapped_from_the_first_decode(tiny_cifar_zip):
    ram = load_dataset(str(tiny_cifar_zip), "train", size=16, limit_per_class=3)
    fresh = load_dataset(str(tiny_cifar_zip), "train", size=8, limit_per_class=3, memory="mmap")  # decodes
    again = load_dataset(str(tiny_cifar_zip), "train", size=16, limit_per_class=3, memory="mmap")  # cached
    assert isinstance(fresh.images, np.memmap) and fresh.images.shape == (30, 8, 8, 3)
    assert isinstance(again.images, np.memmap)
    np.testing.assert_array_equal(again.images, ram.images)
    assert again.ids == ram.ids and again.labels.tolist() == ram.labels.tolist()


# --------------------------------------------------------------------------- discovery


def test_semantic_data_dirs_find_the_jpeg_zip_by_name(tiny_cifar_zip, tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    (data / "cifar10-jpeg.zip").symlink_to(tiny_cifar_zip)
    monkeypatch.setenv("SEMPAIRS_DATA", os.pathsep.join([str(tmp_path / "nothing-here"), str(data)]))
    assert find_dataset("cifar10") == data / "cifar10-jpeg.zip"
    store = load_dataset("cifar10", "test")
    assert len(store) == 100 and np.bincount(store.labels).tolist() == [10] * 10
    rows = {row["name"]: row for row in list_datasets()}
    assert rows["cifar10"]["found"] == str(data / "cifar10-jpeg.zip")
    assert rows["cifar100"]["found"] is None and rows["stl10"]["splits"] == ["train", "test", "unlabeled"]
    assert rows["cifar100"]["num_classes"] == 100


def test_missing_dataset_says_where_it_looked_and_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("SEMPAIRS_DATA", str(tmp_path / "mine"))
    with pytest.raises(FileNotFoundError) as err:
        load_dataset("cifar100", root=str(tmp_path / "root"))
    message = str(err.value)
    for needle in ("cifar-100-python", "cifar100-jpeg.zip", str(tmp_path / "root"), str(tmp_path / "mine"),
                   "--download", "SEMPAIRS_DATA"):
        assert needle in message
    with pytest.raises(FileNotFoundError, match="neither an existing file or folder nor a dataset name"):
        load_dataset("imagenet-9000")


def test_a_registered_dataset_is_found_listed_and_loaded_by_name(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    train, test = pixels(50, 4, 5), pixels(51, 2, 5)
    np.savez(data / "toy_set.npz", x_train=train, y_train=np.array([1, 0, 1, 1]), x_test=test, y_test=np.array([0, 1]),
             class_names=np.array(["no", "yes"]))
    monkeypatch.setenv("SEMPAIRS_DATA", str(data))
    with pytest.raises(FileNotFoundError, match="nor a dataset name"):
        load_dataset("Toy-Set", "test")
    DATASETS.register("toy_set", NamedDataset("toy_set", "Toy: 6 5x5 images in 2 classes", 2, ("train", "test")))
    try:
        store = load_dataset("Toy-Set", "test")  # spelt as CIFAR-10 is
        np.testing.assert_array_equal(store.images, test)
        assert store.labels.tolist() == [0, 1] and store.class_names == ["no", "yes"]
        assert load_dataset("toy_set", "train").labels.tolist() == [1, 0, 1, 1]
        rows = {row["name"]: row for row in list_datasets()}
        assert rows["toy_set"] == {"name": "toy_set", "description": "Toy: 6 5x5 images in 2 classes", "num_classes": 2,
                                   "splits": ["train", "test"], "found": str(data / "toy_set.npz")}
        (data / "toy_set.npz").unlink()
        with pytest.raises(FileNotFoundError, match=r"'toy_set' not found locally. Looked for toy_set-jpeg\.zip") as err:
            load_dataset("toy_set", download=True)  # no torchvision source: nothing to download, nor to suggest it
        assert "--download" not in str(err.value) and "SEMPAIRS_DATA" in str(err.value)
    finally:
        DATASETS.unregister("toy_set")
    assert "toy_set" not in {row["name"] for row in list_datasets()}


# --------------------------------------------------------------------------- errors in image folders


def test_corrupted_jpeg_names_the_file(png_folder):
    root, _ = png_folder
    (root / "train" / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    with pytest.raises(DataError, match=r"cannot read image train/cat/broken\.jpg in .*pngs.*Fix: replace or delete"):
        load_dataset(str(root), "train")


def test_mixed_sizes_need_a_size(tmp_path):
    write_png(tmp_path / "m" / "train" / "cat" / "0.png", pixels(8, 1, 8)[0])
    write_png(tmp_path / "m" / "train" / "cat" / "1.png", pixels(9, 1, 10, 12)[0])
    with pytest.raises(DataError, match=r"train/cat/1\.png is 12x10 but train/cat/0\.png is 8x8.*size"):
        load_dataset(str(tmp_path / "m"), "train")
    assert load_dataset(str(tmp_path / "m"), "train", size=6).images.shape == (2, 6, 6, 3)


def _gradient(h: int, w: int) -> np.ndarray:
    """A smooth (h, w, 3) image, which PNG and JPEG store in little space."""
    img = np.empty((h, w, 3), dtype=np.uint8)
    img[..., 0] = (np.arange(w, dtype=np.uint32) * 255 // max(w - 1, 1)).astype(np.uint8)
    img[..., 1] = (np.arange(h, dtype=np.uint32) * 255 // max(h - 1, 1)).astype(np.uint8)[:, None]
    img[..., 2] = 128
    return img


def test_an_image_of_another_size_is_refused_from_its_header_before_it_is_decoded(tmp_path):
    """Read at native size, a 6000x4000 image among 8x8 ones is refused without decoding its 72 MB."""
    from memwatch import peak_growth

    write_png(tmp_path / "m" / "train" / "cat" / "0.png", pixels(8, 1, 8)[0])
    write_png(tmp_path / "m" / "train" / "cat" / "1.png", _gradient(4000, 6000))

    def load():
        with pytest.raises(DataError, match=r"1\.png is 6000x4000 but train/cat/0\.png is 8x8.*data\.size in a run config"):
            load_dataset(str(tmp_path / "m"), "train")

    grown, _ = peak_growth(load)
    assert grown < 20 * 2**20, grown


def test_a_huge_jpeg_is_decoded_at_a_reduced_scale(tmp_path):
    """A 6000x4000 JPEG (72 MB decoded) read at 16 px: JPEG draft mode decodes it at 1/8 scale (750x500)."""
    from memwatch import peak_growth

    path = tmp_path / "big.jpg"
    Image.fromarray(_gradient(4000, 6000)).save(path, quality=90)
    data = path.read_bytes()
    grown, img = peak_growth(lambda: sources.decode_image(data, 16))
    assert img.shape == (16, 16, 3) and grown < 20 * 2**20, grown
    with Image.open(path) as im:  # the reference: a full decode, resized; the draft changes pixels by a little
        full = np.asarray(im.convert("RGB").resize((16, 16), Image.Resampling.BICUBIC)).astype(int)
    assert np.abs(full - img.astype(int)).mean() < 2


def test_short_side_center_crop_scales_the_short_side_and_keeps_the_centre(tmp_path):
    img = pixels(3, 1, 20, 40)[0]  # 40 wide, 20 high
    write_png(tmp_path / "r" / "train" / "a" / "0.png", img)
    crop = load_dataset(str(tmp_path / "r"), "train", size=10, resize="short_side_center_crop")
    reference = np.asarray(Image.fromarray(img).resize((20, 10), Image.Resampling.BICUBIC))[:, 5:15]  # torchvision's way
    np.testing.assert_array_equal(crop.images[0], reference)
    squash = load_dataset(str(tmp_path / "r"), "train", size=10)
    np.testing.assert_array_equal(squash.images[0], np.asarray(Image.fromarray(img).resize((10, 10), Image.Resampling.BICUBIC)))
    assert len(list((cache.stores_dir()).glob("*.npy"))) == 2  # the resize rule is part of the cache key
    arrays = tmp_path / "a.npz"
    np.savez(arrays, images=img[None])
    np.testing.assert_array_equal(load_dataset(str(arrays), size=10, resize="short_side_center_crop").images[0], reference)
    with pytest.raises(DataError, match="resize must be one of squash, short_side_center_crop"):
        load_dataset(str(arrays), size=10, resize="crop")
