"""`sempairs export`: a run's backbone loaded by plain torchvision and plain timm (in a process that cannot import
sempairs, running exactly the code config.json gives), the hf folder's model card, and the command's refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types

import pytest
import torch
import torchvision
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from sempairs.cli import app
from sempairs.config import load_config
from sempairs.trained.checkpoint import save_checkpoint
from sempairs.trained.loading import build_method, load_backbone
from sempairs.train import train

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE = 16

# Runs each export's code for each library exactly as config.json writes it, in the export's folder, in a
# process where `import sempairs` fails; saves the features of the shared input.
LOADER = """
import json, os, sys
sys.modules["sempairs"] = None
import torch
from safetensors.torch import load_file, save_file
inputs = load_file(sys.argv[1])
features = {}
for folder in sys.argv[3:]:
    os.chdir(folder)
    x = inputs[os.path.basename(folder).split("-")[0]]
    with open("config.json") as f:
        config = json.load(f)
    for library, code in config["code"].items():
        scope = {}
        exec(code, scope)
        with torch.no_grad():
            features[os.path.basename(folder) + "/" + library] = scope["model"](x).contiguous()
save_file(features, sys.argv[2])
"""


def invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


@pytest.fixture(scope="module")
def trained_run(tiny_cifar_zip, tmp_path_factory):
    """A 1-epoch ResNet-18 run (small stem, width 1, 16 px) on 5 images per class, with a kNN result."""
    out = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SEMPAIRS_CACHE", str(out / "cache"))
        cfg = load_config(None, [f"data.dataset={tiny_cifar_zip}", f"data.size={SIZE}", f"out_dir={out}", "name=r18",
                                 "data.limit_per_class=5", "data.test_limit_per_class=5", "train.epochs=1",
                                 "train.batch_size=25", "train.compile=false", "knn.k=5"])
        train(cfg, progress=False)
    return out / "r18"


def made_run(root, name: str, *overrides: str, size: int = SIZE):
    """A run folder holding a checkpoint of a randomly initialised backbone whose BatchNorm layers have random
    affine weights and the statistics of random images (as after training: features of about unit scale)."""
    cfg = load_config(None, [f"out_dir={root}", f"name={name}", f"data.size={size}", *overrides])
    method = build_method(cfg)
    g = torch.Generator().manual_seed(1)
    for module in method.backbone.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.weight.data.uniform_(0.5, 1.0, generator=g)
            module.bias.data.uniform_(-0.2, 0.2, generator=g)
            module.momentum = None  # running statistics: the plain average over the batches below
    with torch.no_grad():
        for _ in range(2):
            method.backbone.train()(torch.randn(8, 3, size, size, generator=g))
    cfg.run_dir.mkdir(parents=True)
    save_checkpoint({"model": method.state_dict(), "config": cfg.model_dump(mode="json"), "epoch": 0},
                    cfg.run_dir / "last.ckpt")
    return cfg.run_dir


def test_exports_load_in_plain_torchvision_and_timm_with_the_runs_features(trained_run, tmp_path):
    runs = {
        "trained": trained_run,
        "narrow": made_run(tmp_path, "narrow", "backbone.width=0.25", "backbone.stem_width=16"),
        "r50": made_run(tmp_path, "r50", "backbone.name=resnet50", "backbone.small_stem=false", "backbone.stem_width=32",
                        size=64),
        "vit": made_run(tmp_path, "vit", "backbone.name=vit_tiny", "backbone.patch_size=8"),
    }
    jobs = [("trained", f) for f in ("torchvision", "timm", "safetensors", "hf")]
    jobs += [("narrow", "timm"), ("narrow", "safetensors"), ("r50", "safetensors"), ("vit", "hf")]
    folders = {}
    for run, fmt in jobs:
        folders[f"{run}-{fmt}"] = tmp_path / "exports" / f"{run}-{fmt}"
        code, out = invoke("export", runs[run], "--format", fmt, "--out", folders[f"{run}-{fmt}"])
        assert code == 0, out

    trained = json.loads((folders["trained-torchvision"] / "config.json").read_text())
    assert set(trained["code"]) == {"torchvision"} and "sempairs" not in trained["code"]["torchvision"]
    assert "model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)" in trained["code"]["torchvision"]
    plain = torchvision.models.resnet18()
    state = torch.load(folders["trained-torchvision"] / "model.pth", weights_only=True)
    assert set(state) == set(plain.state_dict()) - {"fc.weight", "fc.bias"}  # no prefix, no classifier
    assert set(load_file(folders["trained-safetensors"] / "model.safetensors")) == set(state)
    libraries = {name: set(json.loads((folder / "config.json").read_text())["code"]) for name, folder in folders.items()}
    assert libraries["trained-safetensors"] == {"torchvision", "timm"} and libraries["narrow-safetensors"] == {"timm"}
    assert libraries["r50-safetensors"] == {"torchvision", "timm"} and libraries["vit-hf"] == {"timm"}

    # ResNet-50 (standard stem) at 64 px, where no convolution is trimmed: at 16 px its last stage sees 1x1 maps,
    # computed with the centre taps only, and its features (up to about 20) differ by float32 rounding (3e-5)
    inputs = {run: torch.randn(3, 3, 64 if run == "r50" else SIZE, 64 if run == "r50" else SIZE,
                               generator=torch.Generator().manual_seed(0)) for run in runs}
    save_file(inputs, tmp_path / "x.safetensors")
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", LOADER, tmp_path / "x.safetensors", tmp_path / "features.safetensors",
                    *folders.values()], check=True, env=env, cwd=tmp_path)
    features = load_file(tmp_path / "features.safetensors")
    assert len(features) == sum(len(v) for v in libraries.values()) == 11
    with torch.no_grad():
        reference = {run: load_backbone(folder).module(inputs[run]) for run, folder in runs.items()}
    for key, value in features.items():
        expected = reference[key.split("-")[0]]
        assert value.dtype == torch.float32 and value.shape == expected.shape
        assert (value - expected).abs().max().item() <= 1e-5, (key, expected.abs().max().item())


def test_hf_folder_has_weights_config_and_a_card_with_the_runs_numbers(trained_run, tmp_path):
    knn_file, = (trained_run / "eval").glob("knn-*.json")  # the final kNN, named by its selection
    knn = json.loads(knn_file.read_text())
    linear = {"linear_top1": 31.25, "note": "text is not a number", "per_class": {"cat": {"top1": 12.5}}, "ok": True,
              "selection": {"train_split": "train", "test_limit_per_class": 5}, "settings": {"l2": 0.001}}
    (trained_run / "eval" / "linear.json").write_text(json.dumps(linear))
    (trained_run / "eval" / "epoch_0001-linear.json").write_text(json.dumps({"linear_top1": 77.125}))
    out = tmp_path / "hf"
    code, output = invoke("export", trained_run, "--format", "hf", "--out", out)
    assert code == 0, output
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((out / "config.json").read_text())
    assert config["source"]["epoch"] == 1 and config["run_config"]["data"]["limit_per_class"] == 5
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: timm\n") and "simclr" in card and "| epochs | 1 of 1 " in card
    numbers = {k: v for k, v in knn.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    assert "knn_top1" in numbers and isinstance(knn["selection"], dict)
    for key, value in numbers.items():
        assert f"- {key}: {json.dumps(value)}" in card
    assert card.count("- selection: ") == 2  # the kNN result's selection and the linear one's
    assert "- linear_top1: 31.25" in card and "- per_class.cat.top1: 12.5" in card and "note" not in card
    assert "- ok:" not in card
    assert '- selection: train_split="train", test_limit_per_class=5' in card and "- settings: l2=0.001" in card
    assert "77.125" not in card  # another checkpoint's result
    assert config["code"]["timm"] in card and config["code"]["torchvision"] in card


def test_export_refuses_a_taken_folder_and_force_replaces_only_an_export(trained_run, tmp_path):
    out = tmp_path / "e"
    assert invoke("export", trained_run, "--format", "torchvision", "--out", out)[0] == 0
    code, output = invoke("export", trained_run, "--format", "timm", "--out", out)
    assert code == 2 and "exists" in output and "--force" in output and len(output.strip().splitlines()) == 1
    code, output = invoke("export", trained_run, "--format", "timm", "--out", out, "--force")
    assert code == 0, output
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]  # the earlier model.pth went
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    code, output = invoke("export", trained_run, "--format", "timm", "--out", other, "--force")
    assert code == 2 and "not a sempairs export" in output and (other / "notes.txt").read_text() == "mine"
    code, output = invoke("export", trained_run, "--format", "timm", "--out", trained_run, "--force")
    assert code == 2 and "run's folder" in output


def test_export_refuses_what_torchvision_cannot_build(tmp_path):
    run = made_run(tmp_path, "narrow", "backbone.width=0.5")
    code, output = invoke("export", run, "--format", "torchvision", "--out", tmp_path / "e")
    assert code == 2 and "width 0.5" in output and "--format timm" in output and len(output.strip().splitlines()) == 1
    assert not (tmp_path / "e").exists()


def test_push_to_hub_uploads_the_hf_folder(trained_run, tmp_path, monkeypatch):
    code, output = invoke("export", trained_run, "--format", "timm", "--out", tmp_path / "t", "--push-to-hub", "me/r18")
    assert code == 2 and "--format hf" in output
    calls = []

    class FakeApi:
        def create_repo(self, repo, exist_ok):
            calls.append(("create", repo, exist_ok))

        def upload_folder(self, repo_id, folder_path, commit_message):
            calls.append(("upload", repo_id, sorted(os.listdir(folder_path))))

    monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(HfApi=FakeApi))
    code, output = invoke("export", trained_run, "--format", "hf", "--out", tmp_path / "h", "--push-to-hub", "me/r18")
    assert code == 0, output
    assert calls == [("create", "me/r18", True), ("upload", "me/r18", ["README.md", "config.json", "model.safetensors"])]
    assert "https://huggingface.co/me/r18" in output
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # not installed
    code, output = invoke("export", trained_run, "--format", "hf", "--out", tmp_path / "h2", "--push-to-hub", "me/r18")
    assert code == 2 and "sempairs[hub]" in output and len(output.strip().splitlines()) == 1
    assert not (tmp_path / "h2").exists()


def test_a_failed_export_leaves_no_folder(trained_run, tmp_path, monkeypatch):
    import errno

    import sempairs.trained.export as export_module

    def full_disk(path, text):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(export_module, "write_text", full_disk)  # after the weights file was written
    code, output = invoke("export", trained_run, "--format", "timm", "--out", tmp_path / "e")
    assert code == 2 and "no space left" in output and len(output.strip().splitlines()) == 1
    assert os.listdir(tmp_path) == []
