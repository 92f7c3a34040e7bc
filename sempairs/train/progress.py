"""A rich progress bar for pretraining: epoch, step, loss, learning rate, images per second."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class TrainProgress:
    """Shows one bar over all steps; prints a line per finished epoch. Does nothing when disabled."""

    def __init__(self, epochs: int, steps_per_epoch: int, start_epoch: int = 0, enabled: bool = True, start_step: int = 0):
        """``start_epoch`` whole epochs and ``start_step`` steps of the next are done already (a resumed run)."""
        self.enabled = enabled
        self.console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}  lr {task.fields[lr]:.3g}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            disable=not enabled,
        )
        self.task = self.progress.add_task("train", total=epochs * steps_per_epoch, completed=start_epoch * steps_per_epoch + start_step, epoch=start_epoch, epochs=epochs, loss=float("nan"), lr=0.0)

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def step(self, epoch: int, loss: float, lr: float) -> None:
        if self.enabled:
            self.progress.update(self.task, completed=None, advance=1, epoch=epoch + 1, loss=loss, lr=lr)

    def epoch_done(self, metrics: dict) -> None:
        """Print the epoch's summary."""
        if not self.enabled:
            return
        knn = f"  knn {metrics['knn_top1']:.2f}%" if "knn_top1" in metrics else ""
        probe = f"  online probe {metrics['online_linear_top1']:.2f}%" if "online_linear_top1" in metrics else ""
        self.progress.console.print(
            f"epoch {metrics['epoch']}: loss {metrics['loss']:.4f}  {metrics['images_per_s']:.0f} img/s  "
            f"spread {metrics['embedding_spread']:.3f}{knn}{probe}"
        )
