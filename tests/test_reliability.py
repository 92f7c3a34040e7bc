"""Issue 17: nothing lost, nothing silently wrong, no code run from a file; each fault met through the CLI.

Every test here failed before the fix it names. docs/reliability.md lists the input classes and
faults tried and what the product does.
"""

from __future__ import annotations

import codecs
import csv
import errno
import hashlib
import io
import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from typer.testing import CliRunner

from sempairs import atomic
from sempairs.cli import app, common
from sempairs.config import load_config
from sempairs.data.registry import load_dataset
from sempairs.data.sources import decode_image
from sempairs.experiments.grid import ExperimentConfig
from sempairs.runlock import run_lock
from sempairs.trained.checkpoint import save_checkpoint
from sempairs.train.loop import learned_nothing


def invoke(*args) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


def error_line(out: str) -> str:
    """The one line holding the error (the message must not be broken across lines)."""
    lines = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, out
    return lines[0]


def snapshot(folder: Path, skip=("run.lock",)) -> dict[str, str]:
    """Content hash of every file under ``folder`` (but ``skip``): records must not change."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name not in skip}


TINY = ["data.size=16", "backbone.small_stem=false", "train.batch_size=40", "train.log_every=1",
        "optim.warmup_epochs=0", "knn.k=5"]


@pytest.fixture(scope="module")
def trained(tiny_cifar_zip, tmp_path_factory):
    """A finished 2-epoch CLI run on a pair file, SGD at lr=1e-9 (it learns nothing), an epoch checkpoint each epoch."""
    root = tmp_path_factory.mktemp("trained")
    cache = os.environ.get("SEMPAIRS_CACHE")
    os.environ["SEMPAIRS_CACHE"] = str(root / "cache")
    try:
        pairs = root / "pairs.csv"
        code, out = invoke("pairs", "from-labels", tiny_cifar_zip, "--per-class", 4, "--out", pairs)
        assert code == 0, out
        code, out = invoke("train", f"data.dataset={tiny_cifar_zip}", f"out_dir={root / 'runs'}", "name=a", *TINY,
                           "pairs.source=file", f"pairs.file={pairs}", "train.epochs=2", "train.checkpoint_every=1",
                           "optim.name=sgd", "optim.lr=1e-9")
        assert code == 0, out
    finally:
        if cache is None:
            os.environ.pop("SEMPAIRS_CACHE")
        else:
            os.environ["SEMPAIRS_CACHE"] = cache
    return root / "runs" / "a", pairs, out


@pytest.fixture
def run_copy(trained, tmp_path):
    """A copy of the trained run to damage, and the pair file it trained on."""
    run, pairs, _ = trained
    shutil.copytree(run, tmp_path / "runs" / "a")
    return tmp_path / "runs" / "a", pairs


def resume_args(run: Path, pairs: Path, *extra):
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    return ("train", f"data.dataset={cfg['data']['dataset']}", f"out_dir={run.parent}", "name=a", *TINY,
            "pairs.source=file", f"pairs.file={pairs}", "train.epochs=2", "train.checkpoint_every=1",
            "optim.name=sgd", "optim.lr=1e-9", *extra, "--resume")


# ----------------------------------------------------------------------------- 1. no code run from a file


def test_a_pickled_payload_in_a_checkpoint_never_runs(tiny_cifar_zip, tmp_path):
    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    evil = tmp_path / "evil.ckpt"
    torch.save({"model": Payload(), "config": {}}, evil)
    for args in (("eval", "knn", evil, "--data", tiny_cifar_zip),
                 ("pairs", "mine", tiny_cifar_zip, "--encoder", evil, "--out", tmp_path / "m.csv"),
                 ("export", evil, "--format", "timm", "--out", tmp_path / "export")):
        code, out = invoke(*args)
        assert code == 2 and "refused to load" in error_line(out) and str(evil) in error_line(out), out
    assert not marker.exists() and not (tmp_path / "export").exists()


def test_resuming_from_a_pickled_payload_never_runs_it(run_copy, tmp_path):
    run, pairs = run_copy
    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    last = run / "last.ckpt"
    state = torch.load(last, weights_only=True)  # a real checkpoint of the run, with one object that runs code
    torch.save({**state, "optimizer": Payload()}, last)
    before = snapshot(run)
    code, out = invoke(*resume_args(run, pairs, "train.epochs=3"))
    assert code == 2 and "refused to load" in error_line(out) and str(last) in error_line(out), out
    assert not marker.exists() and snapshot(run) == before


# ----------------------------------------------------------------------------- 2. nothing silently wrong


def test_labels_mean_the_same_class_in_both_splits(tmp_path):
    """Train lacks class b (an empty folder): kNN (k=1) on test images that copy train images must be right
    for a and c; with per-split numbering the c copies were scored as b."""
    rng = np.random.default_rng(0)
    counts = {"a": 4, "b": 3, "c": 4}
    for cls, n in counts.items():
        for split in ("train", "test"):
            (tmp_path / "data" / split / cls).mkdir(parents=True)
        for i in range(n):
            img = Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
            img.save(tmp_path / "data" / "test" / cls / f"{i}.png")
            if cls != "b":
                img.save(tmp_path / "data" / "train" / cls / f"{i}.png")
    code, out = invoke("train", f"data.dataset={tmp_path / 'data'}", f"out_dir={tmp_path / 'runs'}", "name=c",
                       "data.size=16", "backbone.small_stem=false", "train.batch_size=8", "train.epochs=1",
                       "optim.warmup_epochs=0", "knn.k=1")
    assert code == 0, out
    assert "warning:" in out and "split 'train' has no images of class(es) 'b'" in out
    [file] = (tmp_path / "runs" / "c" / "eval").glob("knn-*.json")
    knn = yaml.safe_load(file.read_text())
    right = counts["a"] + counts["c"]  # each copy finds its original; b cannot be predicted from train
    assert knn["knn_top1"] == pytest.approx(100 * right / sum(counts.values()))


def test_a_grid_never_reuses_cells_computed_with_another_base(tiny_cifar_zip, tmp_path):
    base = {"data": {"dataset": str(tiny_cifar_zip), "size": 16}, "pairs": {"per_class": 4},
            "backbone": {"small_stem": False}, "optim": {"warmup_epochs": 0, "lr": 0.6},
            "train": {"epochs": 1, "batch_size": 40}, "knn": {"k": 5}}
    config = tmp_path / "grid.yaml"

    def write(base):
        exp = ExperimentConfig(name="g", out_dir=str(tmp_path), base=base, axes={"train.seed": [0]}, embedding=[])
        config.write_text(yaml.safe_dump(exp.model_dump(mode="json")))
        return exp

    exp = write(base)
    code, out = invoke("experiment", config)
    assert code == 0, out
    results = exp.results_path.read_text()
    write({**base, "optim": {"warmup_epochs": 0, "lr": 0.1}})  # the cell now means another run
    code, out = invoke("experiment", config)
    assert code == 2 and "cell train.seed=0: cannot resume" in error_line(out) and "optim.lr: 0.6 -> 0.1" in out
    code, out = invoke("experiment", config, "--only-report")
    assert code == 2 and "no results for the grid's current settings" in error_line(out)
    assert exp.results_path.read_text() == results
    write({**base, "knn": {"k": 3}})  # a change resuming can serve: the cell is evaluated again, not skipped
    code, out = invoke("experiment", config)
    assert code == 0 and "done, skipped" not in out, out
    [row] = list(csv.DictReader(open(exp.results_path)))
    assert row["knn_k"] == "3" and row["config_hash"] not in results


def test_a_run_that_learned_nothing_says_so(trained):
    run, _, out = trained
    assert "warning: the run learned nothing" in out and "optim.lr" in out
    history = list(csv.DictReader(open(run / "history.csv")))
    assert history[0]["warning"] == "" and "learned nothing" in history[-1]["warning"]


def test_learned_nothing_is_judged_against_the_first_step():
    cfg = load_config()
    assert learned_nothing(5.0, [{"epoch": 1, "loss": 4.9}, {"epoch": 2, "loss": 4.6}], cfg, steps=8) is None
    assert "learned nothing" in learned_nothing(5.0, [{"epoch": 1, "loss": 4.99}, {"epoch": 2, "loss": 4.97}], cfg, steps=8)
    assert "learned nothing" in learned_nothing(-0.5, [{"epoch": 1, "loss": -0.5}], cfg, steps=4)
    assert learned_nothing(5.0, [{"epoch": 1, "loss": 5.0}], cfg, steps=1) is None  # one step: nothing to compare
    assert learned_nothing(None, [{"epoch": 1, "loss": 4.0}], cfg, steps=8) is None  # saved before it was recorded


# ----------------------------------------------------------------------------- 3. records never destroyed or mixed


def test_a_refused_resume_changes_no_record_and_its_advice_works(run_copy):
    run, pairs = run_copy
    before = snapshot(run)
    code, out = invoke(*resume_args(run, pairs, "optim.lr=0.1"))
    assert code == 2 and "config differs in optim.lr: 1e-09 -> 0.1;" in error_line(out) and str(run / "config.yaml") in out
    assert snapshot(run) == before
    code, out = invoke("train", run / "config.yaml", f"out_dir={run.parent}", "--resume")  # the advice: the run's config
    assert code == 0, out


def test_a_resume_with_other_pairs_is_refused_before_writing(run_copy):
    run, pairs = run_copy
    text = pairs.read_text()
    lines = text.splitlines()
    pairs.write_text("\n".join(lines[:3] + lines[:2:-1]) + "\n")  # the same pairs in another order, same config
    try:
        before = snapshot(run)
        code, out = invoke(*resume_args(run, pairs))
    finally:
        pairs.write_text(text)
    assert code == 2 and "the pairs differ" in error_line(out)
    assert snapshot(run) == before


def test_a_second_run_in_the_same_folder_fails_at_once_naming_the_holder(run_copy):
    run, pairs = run_copy
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from sempairs.runlock import run_lock
        with run_lock({str(run)!r}):
            print("held", flush=True)
            time.sleep(600)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        code, out = invoke(*resume_args(run, pairs, "train.epochs=3"))
        assert code == 2 and f"pid {holder.pid} on {socket.gethostname()}" in error_line(out)
    finally:
        holder.kill()  # SIGKILL: the holder cannot clean up
        holder.wait()
    with run_lock(run):  # the kernel released the dead holder's lock: not stale
        pass


@pytest.mark.parametrize("damage", [lambda b: b[: len(b) // 2], lambda b: b"", lambda b: os.urandom(len(b))],
                         ids=["truncated", "empty", "garbage"])
def test_a_damaged_last_checkpoint_is_named_with_the_newest_intact_one(run_copy, damage):
    run, pairs = run_copy
    last = run / "last.ckpt"
    last.write_bytes(damage(last.read_bytes()))
    code, out = invoke(*resume_args(run, pairs, "train.epochs=3"))
    line = error_line(out)
    assert code == 2 and str(last) in line and f"newest intact checkpoint is {run / 'epoch_0002.ckpt'}" in line
    (run / "epoch_0002.ckpt").write_bytes(b"")  # a damaged copy is passed over
    code, out = invoke("eval", "knn", run)
    assert code == 2 and str(run / "epoch_0001.ckpt") in error_line(out)


def test_disk_full_while_saving_a_checkpoint_leaves_no_partial_file(run_copy, monkeypatch):
    run, pairs = run_copy
    real_open = open

    class FullDisk:
        def __init__(self, f):
            self.f, self.written = f, 0

        def write(self, data):
            self.written += len(data)
            if self.written > 1000:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.f.write(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.f.__exit__(*exc)

    def full_for_checkpoints(path, mode="r", **kwargs):
        f = real_open(path, mode, **kwargs)
        return FullDisk(f) if ".ckpt." in str(path) and "x" in mode else f

    monkeypatch.setattr(atomic, "open", full_for_checkpoints, raising=False)
    before = (run / "last.ckpt").read_bytes()
    code, out = invoke(*resume_args(run, pairs, "train.epochs=3"))
    assert code == 2 and f"no space left on the device while writing {run / 'last.ckpt'}" in error_line(out)
    assert (run / "last.ckpt").read_bytes() == before  # the old checkpoint is intact
    assert not list(run.glob(".*.tmp")) and not (run / "epoch_0003.ckpt").exists()


def test_every_writer_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")

    def broken_copy(src, dst):
        Path(dst).write_bytes(b"partial")
        raise KeyboardInterrupt  # killed mid-copy

    def no_link(src, dst):
        raise OSError(errno.EXDEV, "cross-device link")  # another file system: a copy instead

    (tmp_path / "src").write_bytes(b"new")
    monkeypatch.setattr(atomic.os, "link", no_link)
    monkeypatch.setattr(atomic.shutil, "copyfile", broken_copy)
    with pytest.raises(KeyboardInterrupt):
        atomic.snapshot_file(tmp_path / "src", target)
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["f.bin", "src"]
    (tmp_path / "src").unlink()
    monkeypatch.undo()
    save_checkpoint({"model": {"w": torch.ones(3)}, "config": {}}, target)
    assert torch.equal(torch.load(target, weights_only=True)["model"]["w"], torch.ones(3))
    stale = tmp_path / f".f.bin.{socket.gethostname()}.999999999.tmp"  # left by a killed writer
    stale.write_bytes(b"x")
    atomic.write_text(target, "new")
    assert not stale.exists() and target.read_text() == "new"
    written = [line for path in Path(atomic.__file__).parent.rglob("*.py") if path.name != "atomic.py"
               for line in path.read_text().splitlines()
               if ".write_text(" in line or ".write_bytes(" in line or "savefig(" in line and "savefig(f," not in line
               or "shutil.copy" in line or "open(" in line and ('"w' in line or "'w" in line)]
    assert not [line for line in written if "atomic" not in line], written


def test_a_snapshot_shares_the_disk_blocks_and_keeps_its_content_when_the_source_is_replaced(tmp_path):
    last, kept = tmp_path / "last.ckpt", tmp_path / "epoch_0001.ckpt"
    atomic.write_bytes(last, b"epoch 1")
    atomic.snapshot_file(last, kept)
    assert kept.stat().st_ino == last.stat().st_ino  # a hard link: no second copy on disk
    atomic.write_bytes(last, b"epoch 2")
    assert kept.read_bytes() == b"epoch 1" and last.read_bytes() == b"epoch 2"


# ----------------------------------------------------------------------------- 4. one-line errors, bugs keep tracebacks


def test_user_errors_are_one_line_and_bugs_keep_their_traceback(tiny_cifar_zip, tmp_path, monkeypatch):
    base = ("train", f"data.dataset={tiny_cifar_zip}", f"out_dir={tmp_path}", *TINY)
    for extra, expected in ((("train.accelerator=tpux",), "train.accelerator='tpux'"),
                            (("train.devices=0",), "train.devices=0"),
                            (("train.devices=abc",), "train.devices='abc'")):
        code, out = invoke(*base, "name=x", *extra)
        assert code == 2 and expected in error_line(out) and "Fix:" in error_line(out), out
    assert not (tmp_path / "x").exists()  # refused before anything was written
    code, out = invoke("train", tmp_path)
    assert code == 2 and f"{tmp_path} is a folder" in error_line(out)

    pair_file = tmp_path / "p.csv"
    pair_file.write_text("anchor,positive\n0,1\n")
    real_read = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda self: (_ for _ in ()).throw(
        PermissionError(errno.EACCES, "Permission denied", str(self))) if self == pair_file else real_read(self))
    code, out = invoke("pairs", "check", pair_file, "--data", tiny_cifar_zip)
    assert code == 2 and f"permission denied: {pair_file}" in error_line(out)
    monkeypatch.setattr(Path, "read_bytes", real_read)

    real_open = open
    monkeypatch.setattr(atomic, "open", lambda path, *a, **k: (_ for _ in ()).throw(
        PermissionError(errno.EACCES, "Permission denied", str(path))) if "locked" in str(path) else real_open(path, *a, **k),
        raising=False)
    code, out = invoke("pairs", "augmented", tiny_cifar_zip, "--out", tmp_path / "locked" / "x.csv")
    assert code == 2 and "permission denied" in error_line(out) and "locked" in error_line(out)

    def bug(*args, **kwargs):
        raise ValueError("a bug, not a user error")

    monkeypatch.setattr("sempairs.pairs.check_pairs", bug)
    result = CliRunner().invoke(app, ["pairs", "check", str(pair_file), "--data", str(tiny_cifar_zip)])
    assert result.exit_code == 1 and isinstance(result.exception, ValueError)  # the traceback is kept


def test_a_pair_file_that_is_not_text_is_refused_by_train(tiny_cifar_zip, tmp_path):
    for name, data, expected in (("binary.csv", b"anchor,positive\n\x81\x8d\x8f,1\n", "neither UTF-8 nor Windows-1252"),
                                 ("nobom16.csv", "anchor,positive\n0,1\n".encode("utf-16-le"), "NUL bytes")):
        (tmp_path / name).write_bytes(data)
        code, out = invoke("train", f"data.dataset={tiny_cifar_zip}", f"out_dir={tmp_path / 'runs'}", "name=n", *TINY,
                           "pairs.source=file", f"pairs.file={tmp_path / name}")
        assert code == 2 and str(tmp_path / name) in error_line(out) and expected in out and "CSV UTF-8" in out, out
        assert not (tmp_path / "runs" / "n" / "config.yaml").exists()  # refused before any record was written


DENIABLE = ("zip", "class-folder", "image")


def _data_to_deny(tiny_cifar_zip: Path, tmp_path: Path, what: str) -> tuple[Path, Path]:
    """(the dataset to load, the path in it to make unreadable): the dataset zip, a class folder or one image."""
    if what == "zip":
        shutil.copy(tiny_cifar_zip, tmp_path / "data.zip")
        return tmp_path / "data.zip", tmp_path / "data.zip"
    for cls in ("a", "b"):
        (tmp_path / "img" / "train" / cls).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(tmp_path / "img" / "train" / cls / f"{i}.png")
    return tmp_path / "img", tmp_path / "img" / "train" / "a" / ("0.png" if what == "image" else "")


def _assert_permission_denied(data: Path, denied: Path, tmp_path: Path) -> None:
    code, out = invoke("pairs", "augmented", data, "--out", tmp_path / "p.csv")
    assert code == 2 and f"permission denied: {str(denied).rstrip('/')}. Fix: give your user access" in error_line(out), out
    assert not (tmp_path / "p.csv").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads whatever the mode bits say: the monkeypatched test stands in")
@pytest.mark.parametrize("what", DENIABLE)
def test_unreadable_data_is_permission_denied_naming_it(tiny_cifar_zip, tmp_path, what):
    data, denied = _data_to_deny(tiny_cifar_zip, tmp_path, what)
    mode = denied.stat().st_mode
    os.chmod(denied, 0)
    try:
        _assert_permission_denied(data, denied, tmp_path)
    finally:
        os.chmod(denied, mode)


@pytest.mark.parametrize("what", DENIABLE)
def test_unreadable_data_is_permission_denied_naming_it_monkeypatched(tiny_cifar_zip, tmp_path, monkeypatch, what):
    """What the kernel does for a user without access (opening the file or listing the folder fails with EACCES)."""
    data, denied = _data_to_deny(tiny_cifar_zip, tmp_path, what)

    def denying(real):
        def call(path=".", *args, **kwargs):
            if isinstance(path, (str, os.PathLike)) and Path(path) == denied:
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            return real(path, *args, **kwargs)
        return call

    monkeypatch.setattr(io, "open", denying(io.open))  # zipfile and Path.read_bytes open through io.open
    monkeypatch.setattr(os, "scandir", denying(os.scandir))  # os.walk lists folders with os.scandir
    _assert_permission_denied(data, denied, tmp_path)


def test_disk_full_writing_pairs_is_one_line_and_leaves_nothing(tiny_cifar_zip, tmp_path, monkeypatch):
    real_open = open

    def full(path, mode="r", **kwargs):
        if "x" in mode:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(path, mode, **kwargs)

    monkeypatch.setattr(atomic, "open", full, raising=False)
    out_file = tmp_path / "out" / "sp.csv"
    code, out = invoke("pairs", "from-labels", tiny_cifar_zip, "--per-class", 2, "--out", out_file)
    assert code == 2 and f"no space left on the device while writing {out_file}" in error_line(out)
    assert list(out_file.parent.iterdir()) == []


@pytest.mark.parametrize("columns", [80, 200])
def test_errors_are_never_hard_wrapped(tmp_path, monkeypatch, columns):
    for console in (common.console, common.error_console):
        monkeypatch.setattr(console, "width", columns)
    config = tmp_path / ("a-rather-long-folder-name-" * 4) / "missing-config-file-with-a-long-name.yaml"
    code, out = invoke("train", config)
    assert code == 2 and f"config file {config} does not exist" in error_line(out)


# ----------------------------------------------------------------------------- 5. input classes


def pixels_of(tmp_path: Path, name: str, image: Image.Image, **save) -> np.ndarray:
    path = tmp_path / name
    image.save(path, **save)
    return decode_image(path.read_bytes(), None)


def test_every_pil_mode_and_bit_depth_reads_as_correct_rgb(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    grey = rng.integers(0, 256, (6, 5), dtype=np.uint8)
    alpha = rng.integers(0, 256, (6, 5), dtype=np.uint8)
    grey3 = np.repeat(grey[..., None], 3, axis=-1)
    premultiplied = lambda c, a: ((c.astype(np.int64) * a[..., None] + 127) // 255).astype(np.uint8)  # noqa: E731
    palette = rng.integers(0, 256, (16, 3), dtype=np.uint8)
    index = rng.integers(0, 16, (6, 5), dtype=np.uint8)
    index[0, :2] = 3  # the transparent index occurs
    paletted = Image.fromarray(index, "P")
    paletted.putpalette(palette.flatten().tolist())
    pa = paletted.convert("PA")
    pa.putalpha(Image.fromarray(alpha))
    trns_index, trns_table = paletted.copy(), paletted.copy()
    trns_index.info["transparency"] = 3
    index_alpha = rng.integers(0, 256, 16, dtype=np.uint8)  # PNG tRNS: an alpha per palette entry
    trns_table.info["transparency"] = bytes(index_alpha)
    assert 1 < grey.max() <= 255
    cases = {  # file: (image, the mode it opens as, the RGB it must read as, computed from the definition)
        "L.png": (Image.fromarray(grey), "L", grey3),
        "1.png": (Image.fromarray(grey > 127), "1", np.repeat(np.where(grey > 127, 255, 0)[..., None], 3, -1)),
        "RGBA.png": (Image.fromarray(np.dstack([rgb, alpha])), "RGBA", premultiplied(rgb, alpha)),
        "LA.png": (Image.fromarray(np.dstack([grey, alpha]), "LA"), "LA", premultiplied(grey3, alpha)),
        "PA.tif": (pa, "PA", premultiplied(palette[index], alpha)),
        "P-trns-index.png": (trns_index, "P", premultiplied(palette[index], np.where(index == 3, 0, 255))),
        "P-trns-index.gif": (trns_index, "P", premultiplied(palette[index], np.where(index == 3, 0, 255))),
        "P-trns-table.png": (trns_table, "P", premultiplied(palette[index], index_alpha[index])),
        "I16.png": (Image.fromarray((grey.astype(np.uint16) * 257)), "I;16", grey3),  # 16-bit grey: 257 * v -> v
        "I16.tif": (Image.fromarray((grey.astype(np.uint16) * 257)), "I;16", grey3),
        "I.tif": (Image.fromarray(grey.astype(np.int32) * 257), "I", grey3),
        "F.tif": (Image.fromarray(grey.astype(np.float32) / 255), "F", grey3),  # maximum <= 1: 0..1
        "F255.tif": (Image.fromarray(grey.astype(np.float32)), "F", grey3),  # maximum in 1..255: 0..255
        "CMYK.tif": (Image.fromarray(rgb).convert("CMYK"), "CMYK",
                     np.asarray(Image.fromarray(rgb).convert("CMYK").convert("RGB"))),
        "P.png": (Image.fromarray(rgb).quantize(16), "P", np.asarray(Image.fromarray(rgb).quantize(16).convert("RGB"))),
    }
    for name, (image, mode, expected) in cases.items():
        got = pixels_of(tmp_path, name, image)
        with Image.open(tmp_path / name) as saved:
            assert saved.mode == mode, (name, saved.mode)  # the case tests the mode it names
        assert got.dtype == np.uint8 and got.shape == expected.shape, name
        assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1, name
    smooth = np.stack([*np.meshgrid(np.linspace(0, 255, 16), np.linspace(40, 200, 16)), np.full((16, 16), 90.0)], -1)
    smooth = smooth.round().astype(np.uint8)
    ycbcr = pixels_of(tmp_path, "YCbCr.jpg", Image.fromarray(smooth).convert("YCbCr"), quality=100, subsampling=0)
    assert np.abs(ycbcr.astype(int) - smooth.astype(int)).mean() < 2  # JPEG is lossy even at quality 100
    for name, values in (("F-big.tif", np.full((2, 2), 256.5, np.float32)), ("F-negative.tif", np.full((2, 2), -0.5, np.float32)),
                         ("I-big.tif", np.full((2, 2), 65536, np.int32)), ("I-negative.tif", np.full((2, 2), -1, np.int32))):
        root = tmp_path / name.split(".")[0]
        (root / "train" / "x").mkdir(parents=True)
        Image.fromarray(values).save(root / "train" / "x" / name)
        code, out = invoke("pairs", "augmented", root, "--out", tmp_path / "p.csv")  # refused, naming the file
        line = error_line(out)
        assert code == 2 and f"cannot read image train/x/{name} in {root}" in line and "no defined 8-bit scale" in line, out


def _encodings():
    return {"utf-8-sig": lambda t: codecs.BOM_UTF8 + t.encode("utf-8"),
            "utf-16-le": lambda t: codecs.BOM_UTF16_LE + t.encode("utf-16-le"),
            "utf-16-be": lambda t: codecs.BOM_UTF16_BE + t.encode("utf-16-be"),
            "cp1252": lambda t: t.encode("cp1252")}


def test_pair_files_in_every_spreadsheet_encoding(tiny_cifar_zip, tmp_path):
    text = "# curated by José Müller, ¼ of the set\nanchor,positive,label\ntrain/cat/0000.jpg,train/cat/0001.jpg,cat\n"
    for name, encode in _encodings().items():
        path = tmp_path / f"{name}.csv"
        path.write_bytes(encode(text))
        code, out = invoke("pairs", "check", path, "--data", tiny_cifar_zip)
        assert code == 0 and "ok: 1 pairs" in out, (name, out)
    for name, data, expected in (("nobom16.csv", text.encode("utf-16-le"), "NUL bytes"),
                                 ("binary.csv", b"anchor,positive\n\x81\x8d\x8f,1\n", "neither UTF-8 nor Windows-1252")):
        (tmp_path / name).write_bytes(data)
        code, out = invoke("pairs", "check", tmp_path / name, "--data", tiny_cifar_zip)
        assert code == 1 and expected in out and "CSV UTF-8" in out, out


def test_a_pair_file_built_for_another_dataset_is_refused(tiny_cifar_zip, tmp_path):
    pairs = tmp_path / "sp.csv"
    assert invoke("pairs", "from-labels", tiny_cifar_zip, "--per-class", 2, "--out", pairs)[0] == 0
    code, out = invoke("pairs", "check", pairs, "--data", tiny_cifar_zip, "--split", "test")
    assert code == 1 and "built for split 'train'" in out
    other = tmp_path / "other.npz"  # integer ids resolve in any array dataset: only the recorded identity tells
    np.savez(other, x_train=np.zeros((60, 8, 8, 3), np.uint8), y_train=np.repeat(np.arange(3), 20),
             class_names=np.array(["apple", "pear", "plum"]))
    numbered = tmp_path / "numbered.csv"
    assert invoke("pairs", "augmented", other, "--out", numbered)[0] == 0
    code, out = invoke("pairs", "check", numbered, "--data", tiny_cifar_zip)
    assert code == 1 and "it was built for another dataset" in out and "apple" in out


def test_non_finite_numbers_are_refused_and_an_empty_score_is_no_score(tiny_cifar_zip, tmp_path):
    for override in ("optim.lr=.inf", "augment.mean=[0.5,.nan,0.5]", "knn.temperature=1e999"):
        code, out = invoke("train", f"data.dataset={tiny_cifar_zip}", f"out_dir={tmp_path}", override)
        assert code == 2 and "finite" in out, out
    path = tmp_path / "p.csv"
    path.write_text("anchor,positive,score,source\n0,1,,mined\n2,3,0.5,mined\n4,5,nan,mined\n6,7,-inf,mined\n")
    code, out = invoke("pairs", "check", path, "--data", tiny_cifar_zip)
    assert code == 1 and "2 problem(s)" in out and "line 4: score 'nan' is not a finite number" in out


def test_every_name_a_user_gives_stays_inside_the_output_folder(tiny_cifar_zip, tmp_path):
    for name in ("../escaped", "/absolute", "a/b", ".."):
        code, out = invoke("train", f"data.dataset={tiny_cifar_zip}", f"out_dir={tmp_path / 'runs'}", f"name={name}")
        assert code == 2 and "name:" in out and "plain name" in out, (name, out)
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump({"name": "../up", "out_dir": str(tmp_path), "axes": {"train.seed": [0]}}))
    code, out = invoke("experiment", config)
    assert code == 2 and "plain name" in out
    code, out = invoke("pairs", "augmented", tiny_cifar_zip, "--out", tiny_cifar_zip)  # would overwrite the data
    assert code == 2 and "is an input of this command" in error_line(out)
    assert load_dataset(str(tiny_cifar_zip), "train", size=8).images.shape[0] == 200
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "exp.yaml"]
