"""Builds a cache entry in a fresh process and measures its memory: ``python tests/build_under_watch.py ZIP SIZE OUT``.

The peak resident memory (VmHWM) is reset (``/proc/self/clear_refs``) after the imports, so the
peak read after the build is that of the build alone. Written to OUT (JSON): the store's bytes,
the peak growth while building it streamed into the cache (data.memory=mmap), the growth when
it is then opened into RAM (a control: the measurement sees a store held in memory), and the
final loss of a short training run from the mapped entry.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from memwatch import peak_growth
from sempairs.config import load_config
from sempairs.data import sources
from sempairs.data.registry import load_dataset
from sempairs.train import train


def main(zip_path: str, size: int, out: Path) -> None:
    sources.CHUNK_BYTES = 2**20  # small chunks, so that a few of them are far below the store
    built, mapped = peak_growth(lambda: load_dataset(zip_path, size=size, memory="mmap", workers=1))
    in_ram, _ = peak_growth(lambda: load_dataset(zip_path, size=size, memory="ram"))
    cfg = load_config(None, [
        f"data.dataset={zip_path}", f"data.size={size}", "data.memory=mmap", "data.test_split=null",
        f"out_dir={out.parent}", "name=capped", "pairs.source=labels", "pairs.per_class=8", "backbone.name=vit_tiny",
        "train.batch_size=16", "train.epochs=1", "optim.warmup_epochs=0", "train.accelerator=cpu",
    ])
    result = train(cfg, progress=False)
    out.write_text(json.dumps({"store_bytes": int(mapped.images.nbytes), "build_peak": built, "ram_peak": in_ram,
                               "mapped": type(mapped.images).__name__, "loss": result.history[-1]["loss"]}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]))
