"""Export a review: the kept pairs as a pair file (source ``reviewed``), the decisions' provenance in its header."""

from __future__ import annotations

from pathlib import Path

from sempairs.pairs import PairSet
from sempairs.review.store import ACCEPT, REJECT, DecisionStore, ReviewError

REVIEWED = "reviewed"
KEEP = ("accepted", "accepted+unreviewed")


def _kept(decision: str | None, keep: str) -> bool:
    """Whether a pair with ``decision`` is exported: accepted ones always, undecided and skipped ones with ``accepted+unreviewed``."""
    return decision == ACCEPT or (keep == "accepted+unreviewed" and decision != REJECT)


def export_review(db_path: str | Path, out: str | Path, keep: str = "accepted", overwrite: bool = False) -> tuple[Path, dict]:
    """Write the pairs kept by ``keep`` from the review in ``db_path`` to ``out``; returns the path and the header.

    Each exported row keeps its anchor, positive, label and score, with source ``reviewed``. The
    header records the reviewed file (path and SHA-256), the dataset (and its identity, so that
    ``pairs check`` refuses the file against another dataset), ``keep``, the review's counts,
    reviewers and first/last decision time, and the reviewed file's own header.
    """
    if keep not in KEEP:
        raise ReviewError(f"--keep {keep}: use one of {', '.join(KEEP)}")
    out = Path(out)
    with DecisionStore.existing(db_path) as db:
        meta, pairs, decisions = db.meta(), db.pairs(), db.decisions()
        counts, reviewers, (first, last) = db.counts(), db.reviewers(), db.time_span()
    if out.resolve() == Path(meta["pair_file"]).resolve():
        raise ReviewError(f"--out {out} is the reviewed pair file, which a review never modifies. Fix: choose another path")
    if out.exists() and not overwrite:
        raise ReviewError(f"{out} exists. Fix: choose another --out, or pass --force to replace it")
    kept = [p for p in pairs if _kept(decisions.get(p["pos"], {}).get("decision"), keep)]
    if not kept:
        raise ReviewError(f"no pair to export with --keep {keep} ({counts[ACCEPT]} accepted of {counts['pairs']}). "
                          "Fix: accept some pairs first, or use --keep accepted+unreviewed")
    ids = list(dict.fromkeys(i for p in kept for i in (p["anchor"], p["positive"])))
    index = {image_id: i for i, image_id in enumerate(ids)}
    names = sorted({p["label"] for p in kept if p["label"] is not None})
    header = {
        "builder": "review", "keep": keep, "reviewed_file": meta["pair_file"],
        "reviewed_sha256": meta["pair_file_sha256"], "dataset": meta["dataset"], "data": meta["data"],
        "db": str(Path(db_path).resolve()), "counts": {**counts, "exported": len(kept)}, "reviewers": reviewers,
        "first_decision": first, "last_decision": last, "reviewed_meta": meta["pair_meta"],
    }
    pairset = PairSet.build(
        anchor=[index[p["anchor"]] for p in kept],
        positive=[index[p["positive"]] for p in kept],
        label=[-1 if p["label"] is None else names.index(p["label"]) for p in kept],
        score=[float("nan") if p["score"] is None else p["score"] for p in kept],
        source=REVIEWED, meta=header,
    )
    return pairset.save(out, ids=ids, class_names=names), header
