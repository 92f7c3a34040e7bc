"""Pieces shared by the command groups: console, errors, dataset loading, common options."""

from __future__ import annotations

from typing import Optional

import typer
from rich.console import Console

console = Console()


def fail(message: str) -> None:
    """Print ``message`` as an error and exit with status 2."""
    Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(2)


def load(dataset: str, split: str, root: Optional[str], download: bool, size: Optional[int] = None):
    """A dataset split, or a clean error exit naming what is wrong."""
    from sempairs.data.registry import load_dataset

    try:
        return load_dataset(dataset, split=split, size=size, download=download, root=root)
    except (FileNotFoundError, ValueError) as exc:
        fail(str(exc))


DatasetArg = typer.Argument(..., help="cifar10 | cifar100 | stl10 | image folder | zip of one | .npz")
SplitOpt = typer.Option("train", help="Split of the dataset the pairs index.")
RootOpt = typer.Option(None, help="Folder holding (or to receive) the dataset.")
DownloadOpt = typer.Option(False, "--download", help="Download torchvision datasets if not found locally.")
