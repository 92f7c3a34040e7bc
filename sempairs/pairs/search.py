"""k-nearest-neighbour search over embeddings: exact chunked torch (CPU or CUDA) or faiss (CPU).

Similarity is cosine (inner product of L2-normalised vectors, larger is nearer) or euclidean
distance (smaller is nearer). Backends:

``torch``
    Exact: queries are processed in chunks whose (chunk, database) score matrix fits in
    ``max_bytes`` (``chunk = max_bytes // (8 bytes x database size)``; default 512 MiB on CPU, a
    quarter of the free memory on CUDA), so memory stays bounded for any number of queries. The matmul runs in float32, or with ``precision="bfloat16"`` /
    ``"float16"`` (meant for CUDA tensor cores) in half precision; the ``k + max(k, 16)`` best
    half-precision candidates of each query are then re-scored in float32, so the returned
    scores are float32 values.
``faiss`` (CPU, ``pip install faiss-cpu``)
    Exact ``IndexFlatIP`` / ``IndexFlatL2`` while the database has at most ``exact_max``
    vectors; above, the approximate graph index ``IndexHNSWFlat`` with ``hnsw_m`` links per
    node, ``ef_construction`` candidates while building and ``max(ef_search, k + 1)`` while
    searching (larger: better recall, slower).
``auto``
    torch on CUDA when a GPU is available, else faiss if installed, else torch on CPU.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from sempairs.errors import InputError

Backend = Literal["auto", "torch", "faiss"]
Metric = Literal["cosine", "euclidean"]
Precision = Literal["float32", "bfloat16", "float16"]

CPU_MAX_BYTES = 512 * 2**20
FAISS_EXACT_MAX = 200_000
HALF = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def import_faiss():
    """The faiss module, or an ImportError that says how to get it or avoid it."""
    try:
        import faiss
    except ImportError as exc:
        raise ImportError(
            "the faiss backend needs the faiss package: pip install faiss-cpu (or sempairs[faiss]), "
            "or use backend='torch' (--backend torch)"
        ) from exc
    return faiss


def resolve_backend(backend: Backend = "auto") -> str:
    """The backend ``auto`` stands for here (torch on CUDA, else faiss if installed, else torch)."""
    if backend not in ("auto", "torch", "faiss"):
        raise InputError(f"unknown search backend {backend!r}; use auto, torch or faiss")
    if backend != "auto":
        return backend
    if torch.cuda.is_available():
        return "torch"
    try:
        import_faiss()
    except ImportError:
        return "torch"
    return "faiss"


def knn_search(
    queries,
    database,
    k: int,
    exclude_self: bool = True,
    backend: Backend = "auto",
    *,
    metric: Metric = "cosine",
    query_index=None,
    precision: Precision = "float32",
    max_bytes: int | None = None,
    chunk_size: int | None = None,
    exact_max: int = FAISS_EXACT_MAX,
    hnsw_m: int = 32,
    ef_construction: int = 80,
    ef_search: int = 128,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` nearest database vectors of each query: (scores, indices), each (Q, k), best first.

    ``queries`` (Q, D) and ``database`` (N, D) are tensors (CPU or CUDA) or arrays. Scores are
    float32 cosine similarities (descending) or euclidean distances (ascending); indices are
    int64 database rows. Results live on the device of ``queries`` (CPU for arrays).
    With ``exclude_self`` query i is the database item ``query_index[i]`` (default: i, a set
    searched against itself) and is never returned. ``k`` is capped at the number of database
    items a query can return. ``precision``, ``max_bytes`` and ``chunk_size`` (which overrides
    the budget) apply to the torch backend; ``exact_max``, ``hnsw_m``, ``ef_construction`` and
    ``ef_search`` to faiss (see the module docstring).
    """
    if metric not in ("cosine", "euclidean"):
        raise InputError(f"unknown metric {metric!r}; use cosine or euclidean")
    if precision not in ("float32", *HALF):
        raise InputError(f"unknown precision {precision!r}; use float32, bfloat16 or float16")
    out_device = queries.device if isinstance(queries, torch.Tensor) else torch.device("cpu")
    q, db = torch.as_tensor(queries), torch.as_tensor(database)
    if q.ndim != 2 or db.ndim != 2 or q.shape[1] != db.shape[1]:
        raise ValueError(f"queries {tuple(q.shape)} and database {tuple(db.shape)} must be (Q, D) and (N, D) with the same D")
    qidx = None
    if exclude_self:
        qidx = torch.arange(len(q)) if query_index is None else torch.as_tensor(query_index, dtype=torch.int64).cpu()
        if len(qidx) != len(q) or (len(qidx) and (qidx.min() < 0 or qidx.max() >= len(db))):
            raise InputError(
                f"exclude_self needs the database row of each of the {len(q)} queries (0..{len(db) - 1}): "
                "pass query_index, or exclude_self=False when queries are not database items"
            )
    k = min(k, len(db) - int(exclude_self))
    if k < 1:
        raise InputError(f"k must be at least 1 and the database must hold more than the query itself (k={k}, {len(db)} items)")
    which = resolve_backend(backend)
    if which == "torch":
        device = torch.device("cuda") if backend == "auto" and torch.cuda.is_available() else db.device
        scores, idx = _torch_search(q.to(device), db.to(device), k, qidx, metric, precision, max_bytes, chunk_size)
    else:
        scores, idx = _faiss_search(q, db, k, qidx, metric, exact_max, hnsw_m, ef_construction, ef_search)
    return scores.to(out_device), idx.to(out_device)


def _prepare(x: torch.Tensor, metric: Metric) -> torch.Tensor:
    x = x.float()
    return F.normalize(x, dim=1) if metric == "cosine" else x


def _chunk_rows(db: torch.Tensor, max_bytes: int | None) -> int:
    """Queries per chunk: their scores against the whole database take at most ``max_bytes`` (8 bytes each)."""
    if max_bytes is None:
        max_bytes = torch.cuda.mem_get_info(db.device)[0] // 4 if db.is_cuda else CPU_MAX_BYTES
    return max(1, max_bytes // (8 * db.shape[0]))


def _torch_search(q, db, k, qidx, metric, precision, max_bytes, chunk_size):
    same = q is db  # a set searched against itself: prepare it once
    db = _prepare(db, metric)
    q = db if same else _prepare(q, metric)
    half = HALF.get(precision)
    depth = k if half is None else min(k + max(k, 16), db.shape[0] - (qidx is not None))
    db_low = db if half is None else db.to(half)
    # euclidean ranks by 2 q.x - |x|^2, i.e. -|q - x|^2 without |q|^2, which is constant per query
    db_sq = (db * db).sum(1).to(db_low.dtype) if metric == "euclidean" else None
    qidx = None if qidx is None else qidx.to(db.device)
    chunk = chunk_size or _chunk_rows(db, max_bytes)
    scores, indices = [], []
    for start in range(0, len(q), chunk):
        qc = q[start : start + chunk]
        sim = qc.to(db_low.dtype) @ db_low.T
        if db_sq is not None:
            sim = sim.mul_(2).sub_(db_sq)
        if qidx is not None:
            sim[torch.arange(len(qc), device=sim.device), qidx[start : start + chunk]] = -torch.inf
        top, idx = sim.topk(depth, dim=1)
        del sim
        if half is not None:  # re-score the half-precision candidates in float32
            cand = db[idx]  # (chunk, depth, D)
            top = torch.einsum("cd,cnd->cn", qc, cand)
            if db_sq is not None:
                top = 2 * top - (cand * cand).sum(-1)
            top, order = top.topk(k, dim=1)
            idx = idx.gather(1, order)
        if db_sq is not None:  # exact distances of the k results
            top = (qc.unsqueeze(1) - db[idx]).norm(dim=-1)
        scores.append(top.float())
        indices.append(idx)
    return torch.cat(scores), torch.cat(indices)


def _faiss_search(q, db, k, qidx, metric, exact_max, hnsw_m, ef_construction, ef_search):
    faiss = import_faiss()
    qn = np.ascontiguousarray(_prepare(q.cpu(), metric).numpy())
    dbn = np.ascontiguousarray(_prepare(db.cpu(), metric).numpy())
    dim = dbn.shape[1]
    depth = k + (qidx is not None)
    if len(dbn) <= exact_max:
        index = faiss.IndexFlatIP(dim) if metric == "cosine" else faiss.IndexFlatL2(dim)
    else:
        kind = faiss.METRIC_INNER_PRODUCT if metric == "cosine" else faiss.METRIC_L2
        index = faiss.IndexHNSWFlat(dim, hnsw_m, kind)
        index.hnsw.efConstruction = ef_construction
        index.hnsw.efSearch = max(ef_search, depth)
    index.add(dbn)
    scores, idx = index.search(qn, depth)
    if qidx is not None:
        scores, idx = _drop_self(scores, idx, qidx.numpy(), k)
    if metric == "euclidean":
        scores = np.sqrt(np.maximum(scores, 0))  # faiss returns squared distances
    return torch.from_numpy(np.ascontiguousarray(scores, dtype=np.float32)), torch.from_numpy(idx.astype(np.int64))


def _drop_self(scores: np.ndarray, idx: np.ndarray, qidx: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """From k + 1 results per query keep k: drop the query itself, or the last result if it is absent."""
    drop = idx == qidx[:, None]
    drop[~drop.any(1), -1] = True
    keep = ~drop
    return scores[keep].reshape(-1, k), idx[keep].reshape(-1, k)
