"""Shared fixtures: small slices of the shared CIFAR-10 JPEG zip, and isolated caches."""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_ZIP = Path(os.environ.get("SEMPAIRS_TEST_ZIP", REPO.parent / "shared" / "data" / "cifar10-jpeg.zip"))


def _slice_zip(dst: Path, per_class: dict[str, int]) -> Path:
    """Copy the first N images of each class of each split of the shared zip into a new zip."""
    if not SHARED_ZIP.exists():
        reason = f"shared CIFAR-10 zip not found at {SHARED_ZIP}"
        if os.environ.get("SEMPAIRS_REQUIRE_DATA"):
            pytest.fail(f"{reason} (SEMPAIRS_REQUIRE_DATA is set: the end-to-end tests must run)")
        pytest.skip(reason)
    counts: dict[tuple[str, str], int] = {}
    with zipfile.ZipFile(SHARED_ZIP) as src, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as out:
        for name in sorted(src.namelist()):
            parts = name.strip("/").split("/")
            if len(parts) < 3 or not name.endswith(".jpg"):
                continue
            split, cls = parts[-3], parts[-2]
            key = (split, cls)
            if counts.get(key, 0) >= per_class[split]:
                continue
            counts[key] = counts.get(key, 0) + 1
            out.writestr(f"{split}/{cls}/{parts[-1]}", src.read(name))
    return dst


def _train_tiny_run(out: Path, dataset: Path, name: str, *overrides: str):
    """Train a 1-epoch ResNet-18 run (16 px, 7x7 stem, ``overrides`` last) on ``dataset`` into ``out/name``, with a
    cache of its own; ``(config, TrainResult)``."""
    from sempairs.config import load_config
    from sempairs.train import train

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEMPAIRS_CACHE", str(out / "cache"))
        cfg = load_config(None, [f"data.dataset={dataset}", "data.size=16", f"out_dir={out}", f"name={name}",
                                 "train.epochs=1", "backbone.small_stem=false", *overrides])
        return cfg, train(cfg, progress=False)


@pytest.fixture(scope="session")
def train_tiny_run():
    """``train_tiny_run(out, dataset, name, *overrides)``: a 1-epoch ResNet-18 run on a slice (see ``_train_tiny_run``)."""
    return _train_tiny_run


@pytest.fixture(scope="session")
def tiny_cifar_zip(tmp_path_factory) -> Path:
    """CIFAR-10 slice in the shared zip's layout: 20 train and 10 test images per class."""
    return _slice_zip(tmp_path_factory.mktemp(SESSION + "tiny") / "cifar10-tiny.zip", {"train": 20, "test": 10})


@pytest.fixture(scope="session")
def small_cifar_zip(tmp_path_factory) -> Path:
    """CIFAR-10 slice for short training runs: 100 train and 50 test images per class."""
    return _slice_zip(tmp_path_factory.mktemp(SESSION + "small") / "cifar10-small.zip", {"train": 100, "test": 50})


SESSION = "session-"  # folders of session fixtures, kept until the session ends


@pytest.fixture(autouse=True, scope="module")
def module_folders_removed(request, tmp_path_factory):
    """A passing module's own temporary folders (its module fixtures' trained runs) are removed when it ends.

    With ``tmp_path_retention_policy = "failed"`` (pyproject.toml) a passing test's folder goes when
    the test ends; this does the same for module fixtures, so the suite's disk use is that of one
    module, not of all of them (CI machines may have little disk). A module with a failure keeps its folders.
    """
    base = tmp_path_factory.getbasetemp()
    before, failed = set(base.iterdir()), request.session.testsfailed
    yield
    if request.session.testsfailed > failed:
        return
    for folder in set(base.iterdir()) - before:
        if folder.is_dir() and not folder.name.startswith(SESSION):
            shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own sempairs cache and no ambient SEMPAIRS_DATA."""
    monkeypatch.setenv("SEMPAIRS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SEMPAIRS_DATA", raising=False)
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def one_thread():
    """For modules of many tiny ops, whose cost on a busy machine is mostly intra-op thread syncing."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


ALLOWED_SKIPS = REPO / "tests" / "allowed_skips.txt"


def _allowed_skips() -> list[str]:
    """Node-id patterns (fnmatch) of tests that may skip where SEMPAIRS_STRICT_SKIPS is set, each with its reason."""
    lines = ALLOWED_SKIPS.read_text(encoding="utf-8").splitlines()
    return [line.split("|", 1)[0].strip() for line in lines if line.strip() and not line.startswith("#")]



def _skips(config) -> tuple[list, list]:
    """The skipped tests' reports, and those not allowed by tests/allowed_skips.txt."""
    import fnmatch

    stats = config.pluginmanager.get_plugin("terminalreporter").stats
    skipped = [r for r in stats.get("skipped", []) if not hasattr(r, "wasxfail")]
    patterns = _allowed_skips()
    return skipped, [r for r in skipped if not any(fnmatch.fnmatchcase(r.nodeid, p) for p in patterns)]


def pytest_sessionfinish(session, exitstatus):
    """With SEMPAIRS_STRICT_SKIPS set (CI), a skip not listed in tests/allowed_skips.txt fails the run."""
    if os.environ.get("SEMPAIRS_STRICT_SKIPS") and exitstatus == pytest.ExitCode.OK and _skips(session.config)[1]:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """The skip count, and with SEMPAIRS_STRICT_SKIPS set, each unlisted skip with its reason."""
    skipped, unlisted = _skips(config)
    terminalreporter.write_line(f"skipped tests: {len(skipped)} ({len(skipped) - len(unlisted)} listed in {ALLOWED_SKIPS.name})")
    if os.environ.get("SEMPAIRS_STRICT_SKIPS"):
        for report in unlisted:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
            terminalreporter.write_line(f"unlisted skip, a failure here: {report.nodeid}: {reason}")
