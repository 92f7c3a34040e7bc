"""``sempairs export``: a run's backbone as files torchvision, timm or the Hugging Face Hub take without sempairs."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from sempairs.cli.common import console
from sempairs.errors import InputError


class ExportFormat(str, Enum):
    """The formats of ``sempairs export`` (``sempairs.trained.export.FORMATS``)."""

    torchvision = "torchvision"
    timm = "timm"
    safetensors = "safetensors"
    hf = "hf"


def export(
    run: Path = typer.Argument(..., help="Run directory (its last.ckpt) or a checkpoint file."),
    format: ExportFormat = typer.Option(..., "--format", help="torchvision (model.pth) | timm | safetensors | hf "
                                        "(model.safetensors; hf adds a model card)."),
    out: Path = typer.Option(..., "--out", help="New folder for the export."),
    force: bool = typer.Option(False, "--force", help="Replace an earlier export in --out."),
    push_to_hub: Optional[str] = typer.Option(None, "--push-to-hub", metavar="REPO",
                                              help="Upload the hf folder to this Hub repository (needs huggingface_hub and a login)."),
) -> None:
    """Export the backbone as a plain state dict with config.json: the exact code that builds and loads it."""
    from sempairs.trained.export import export_run, hub_api
    from sempairs.trained.export import push_to_hub as push

    if push_to_hub is not None and format is not ExportFormat.hf:
        raise InputError("--push-to-hub uploads a model card with the weights. Fix: use it with --format hf")
    api = hub_api() if push_to_hub is not None else None  # a missing package fails before the export
    exported = export_run(run, format.value, out, force=force)
    console.print(f"wrote {', '.join(exported.files)} to {exported.folder} "
                  f"({exported.config['architecture']}, {exported.config['num_features']}-d features; "
                  f"code for {', '.join(exported.config['code'])} in {exported.folder / 'config.json'})", highlight=False)
    if push_to_hub is not None:
        console.print(f"pushed to {push(api, exported.folder, push_to_hub)}", highlight=False)
