"""The rule of every output: an existing output needs --force, and no command writes over one of its inputs, even with
--force (also through a symbolic or hard link, or into an input folder). Each refusal happens before any work."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sempairs.cli import app
from sempairs.data.registry import load_dataset
from sempairs.pairs import load_pairs, pairs_from_labels
from sempairs.review.session import open_review
from sempairs.review.store import DecisionStore


def invoke(*args) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, " ".join(result.output.split())


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def inputs(tiny_cifar_zip, tmp_path):
    """The inputs of the commands: the dataset zip, a pair file, a review database, a weights file, shift results, a run
    folder with its pairs.csv, and a file that stands for something a user keeps (an existing output)."""
    store = load_dataset(str(tiny_cifar_zip))
    pairs = pairs_from_labels(store.labels, 2, seed=0).save(tmp_path / "sp.csv", store=store)
    session = open_review(pairs, store, tmp_path / "sp.sqlite", "ann", str(tiny_cifar_zip))
    session.decisions.decide(0, "accept", "ann", "r0")
    session.decisions.close()
    (tmp_path / "weights.pt").write_bytes(b"weights")
    (tmp_path / "shift.json").write_text('{"rows": [], "summary": {}}')
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "pairs.csv").write_text("the run's record")
    (tmp_path / "kept.csv").write_text("curated by hand")
    (tmp_path / "cmp").mkdir()
    (tmp_path / "cmp" / "shift_compare.png").write_bytes(b"an earlier comparison")
    return {"zip": tiny_cifar_zip, "pairs": pairs, "db": tmp_path / "sp.sqlite", "weights": tmp_path / "weights.pt",
            "shift": tmp_path / "shift.json", "run": tmp_path / "run", "kept": tmp_path / "kept.csv", "cmp": tmp_path / "cmp"}


# Every command that writes a named output: its arguments (OUT: the output), the input it must never overwrite, and the
# file an existing output names (default: OUT itself).
COMMANDS = {
    "pairs from-labels": (["pairs", "from-labels", "{zip}", "--per-class", 2, "--out", "OUT"], "zip"),
    "pairs from-labels --match": (["pairs", "from-labels", "{zip}", "--per-class", 2, "--out", "{tmp}/sp2.csv",
                                   "--match", "OUT"], "zip"),
    "pairs augmented": (["pairs", "augmented", "{zip}", "--out", "OUT"], "zip"),
    "pairs mine": (["pairs", "mine", "{zip}", "--encoder", "{weights}", "--arch", "resnet18", "--out", "OUT"], "weights"),
    "review export": (["review", "export", "{db}", "--out", "OUT"], "db"),
    "eval knn": (["eval", "knn", "{weights}", "--arch", "resnet18", "--data", "{zip}", "--out", "OUT"], "weights"),
}


def command(name: str, inputs: dict, out: Path) -> list:
    args, _ = COMMANDS[name]
    tmp = inputs["kept"].parent
    return [out if a == "OUT" else str(a).format(tmp=tmp, **inputs) for a in args]


@pytest.mark.parametrize("name", list(COMMANDS))
def test_an_existing_output_needs_force_and_an_input_is_never_overwritten(name, inputs):
    kept = inputs["kept"]
    code, out = invoke(*command(name, inputs, kept))
    assert code == 2 and f"{kept} exists. Fix: pass --force" in out, out
    assert kept.read_text() == "curated by hand"

    victim = Path(inputs[COMMANDS[name][1]])
    before = digest(victim)
    links = kept.parent / "links"
    links.mkdir()
    (links / "hard").hardlink_to(victim)
    (links / "soft").symlink_to(victim)
    for out_path in (victim, links / "hard", links / "soft"):
        code, out = invoke(*command(name, inputs, out_path), "--force")
        how = "is an input" if out_path == victim else f"is the same file as {victim}, an input"
        assert code == 2 and f"{out_path} {how} of this command, which it never overwrites (not even with --force)" in out, out
    assert digest(victim) == before


def test_no_output_goes_into_an_input_folder_or_over_another_output(inputs):
    record = inputs["run"] / "pairs.csv"
    code, out = invoke("pairs", "mine", inputs["zip"], "--encoder", inputs["run"], "--out", record, "--force")
    assert code == 2 and f"{record} is inside {inputs['run']}, an input folder of this command" in out, out
    assert record.read_text() == "the run's record"
    same = inputs["kept"].parent / "same.csv"
    code, out = invoke("pairs", "from-labels", inputs["zip"], "--out", same, "--match", same)
    assert code == 2 and "is the --out file" in out and not same.exists(), out


def test_review_never_writes_its_database_over_an_input_and_export_keeps_the_database(inputs):
    for db in (inputs["pairs"], inputs["zip"]):
        before = digest(Path(db))
        code, out = invoke("review", inputs["pairs"], "--data", inputs["zip"], "--db", db, "--port", 0)
        assert code == 2 and "an input of this command" in out, out
        assert digest(Path(db)) == before
    code, out = invoke("review", "export", inputs["db"], "--out", inputs["db"], "--force")
    assert code == 2 and "an input of this command" in out, out
    with DecisionStore.existing(inputs["db"]) as db:   # still the decisions database, the decision in it
        assert db.counts()["accept"] == 1


def test_shift_compare_keeps_an_earlier_comparison_without_force(inputs):
    png = inputs["cmp"] / "shift_compare.png"
    code, out = invoke("eval", "shift-compare", inputs["shift"], "--out", inputs["cmp"])
    assert code == 2 and f"{png} exists. Fix: pass --force" in out, out
    assert png.read_bytes() == b"an earlier comparison"


def test_force_replaces_an_output_that_is_no_input(inputs):
    kept = inputs["kept"]
    code, out = invoke("pairs", "augmented", inputs["zip"], "--out", kept, "--force")
    assert code == 0, out
    store = load_dataset(str(inputs["zip"]))
    assert len(load_pairs(kept, store)) == len(store)
    code, out = invoke("review", "export", inputs["db"], "--out", kept, "--force")
    assert code == 0 and "wrote 1 pairs" in out, out
    assert len(load_pairs(kept, store)) == 1 and os.path.getsize(inputs["db"]) > 0


@pytest.mark.parametrize("code", ["EROFS", "EFBIG", "EIO", "EMFILE", "ELOOP"])
def test_os_errors_while_writing_are_one_line_naming_the_file(code, tiny_cifar_zip, tmp_path, monkeypatch):
    import errno

    from sempairs import atomic

    real_open = open

    def failing(path, mode="r", **kwargs):
        if "x" in mode and "sp.csv" in str(path):   # the temporary file of the atomic write of --out
            raise OSError(getattr(errno, code), os.strerror(getattr(errno, code)), str(path))
        return real_open(path, mode, **kwargs)

    monkeypatch.setattr(atomic, "open", failing, raising=False)
    out_file = tmp_path / "sp.csv"
    code_, out = invoke("pairs", "from-labels", tiny_cifar_zip, "--per-class", 2, "--out", out_file)
    assert code_ == 2 and f"error: {os.strerror(getattr(errno, code)).lower()}: {out_file}. Fix: " in out, out
    assert "Traceback" not in out and not list(tmp_path.glob("*sp.csv*"))


def test_real_os_errors_are_one_line_and_others_keep_their_traceback(tiny_cifar_zip, tmp_path, monkeypatch):
    import errno

    from sempairs import atomic

    long_name = tmp_path / ("x" * 300 + ".csv")   # the kernel's ENAMETOOLONG
    code, out = invoke("pairs", "augmented", tiny_cifar_zip, "--out", long_name)
    assert code == 2 and "file name too long" in out and "Fix: choose a shorter file name" in out, out
    (tmp_path / "loop").symlink_to(tmp_path / "loop")   # the kernel's EEXIST making a link loop a folder
    code, out = invoke("pairs", "augmented", tiny_cifar_zip, "--out", tmp_path / "loop" / "x.csv")
    assert code == 2 and f"file exists: {tmp_path / 'loop'}. Fix: a file (or a broken link) stands where a folder" in out, out
    monkeypatch.setattr(atomic, "open", lambda *a, **k: (_ for _ in ()).throw(OSError(errno.EOPNOTSUPP, "odd")),
                        raising=False)
    result = CliRunner().invoke(app, ["pairs", "augmented", str(tiny_cifar_zip), "--out", str(tmp_path / "p.csv")])
    assert isinstance(result.exception, OSError) and result.exception.errno == errno.EOPNOTSUPP   # not a known one: a bug
