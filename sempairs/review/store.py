"""The decision store: one SQLite file per review holding the reviewed pairs and every decision.

Each decision is one transaction committed before the server answers (WAL journal,
``synchronous=FULL``), so a killed server or a crashed browser loses nothing that was
acknowledged. Every write carries a ``request_id`` chosen by the page: a retried request or a
second tab sending the same one is answered from the log instead of being applied twice, and
each pair has one current decision, so counts never double. Tables:

* ``meta``: provenance (pair file, its SHA-256, dataset, the dataset's identity as pair files
  record it, the pair file's own header);
* ``pairs``: a copy of the reviewed pairs (``pos`` is the row's place in the pair file), so
  ``export`` and ``stats`` need neither the pair file nor the dataset;
* ``events``: the log, one row per decision or undo, with reviewer and UTC time;
* ``decisions``: the current decision of each decided pair and the event that set it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from sempairs.errors import SempairsError

ACCEPT, REJECT, SKIP = "accept", "reject", "skip"
DECISIONS = (ACCEPT, REJECT, SKIP)
PAIR_COLUMNS = ("pos", "anchor", "positive", "label", "score", "source", "anchor_class", "positive_class")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pairs (
    pos INTEGER PRIMARY KEY, anchor TEXT NOT NULL, positive TEXT NOT NULL, label TEXT, score REAL,
    source TEXT NOT NULL, anchor_class TEXT, positive_class TEXT);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, request_id TEXT NOT NULL UNIQUE,
    pair INTEGER NOT NULL REFERENCES pairs(pos), decision TEXT, previous_event INTEGER,
    undoes INTEGER, reviewer TEXT NOT NULL, time TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS decisions (
    pair INTEGER PRIMARY KEY REFERENCES pairs(pos), decision TEXT NOT NULL,
    reviewer TEXT NOT NULL, time TEXT NOT NULL, event INTEGER NOT NULL REFERENCES events(id));
"""


class ReviewError(SempairsError, ValueError):
    """A review that cannot go on as asked; the message names the file or value and the fix."""


class UndoConflict(ReviewError):
    """The decision to undo is no longer the pair's current one (another tab or reviewer changed it)."""


def class_of(pair: dict) -> str:
    """The class a pair is filtered and counted by: its label in the pair file, else its anchor's
    class in the dataset, else ``""`` (unknown)."""
    return pair["label"] or pair["anchor_class"] or ""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class DecisionStore:
    """The SQLite file of one review; safe to share between the server's threads and processes."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise ReviewError(f"{self.path}: cannot be used as a review database ({exc}). Fix: give the database a "
                              "review wrote, or a new file in an existing, writable folder") from exc
        self._lock = threading.Lock()

    @classmethod
    def existing(cls, path: str | Path) -> "DecisionStore":
        """Open the database a review wrote; a missing or empty one is a :class:`ReviewError`."""
        path = Path(path)
        if not path.is_file():
            raise ReviewError(f"{path} does not exist. Fix: give the database `sempairs review` wrote "
                              "(its --db, or PAIRS.csv.review.sqlite beside the pair file PAIRS.csv)")
        store = cls(path)
        if store.is_empty:
            store.close()
            raise ReviewError(f"{path} holds no review. Fix: give the database `sempairs review` wrote")
        return store

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "DecisionStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def _transaction(self):
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` under the thread lock (rolled back on an exception)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # ------------------------------------------------------------------ setup and provenance

    @property
    def is_empty(self) -> bool:
        """True before :meth:`initialise` has stored any pair."""
        return not self._query("SELECT 1 FROM pairs LIMIT 1")

    def initialise(self, rows: Iterable[tuple], meta: dict) -> None:
        """Store the pairs (tuples in :data:`PAIR_COLUMNS` order) and the provenance, in one transaction;
        nothing when the database already holds a review (check its :meth:`meta`)."""
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM pairs LIMIT 1").fetchone():
                return
            db.executemany(f"INSERT INTO pairs VALUES ({','.join('?' * len(PAIR_COLUMNS))})", rows)
            db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in meta.items()])

    def meta(self) -> dict:
        """The provenance stored by :meth:`initialise`."""
        return {k: json.loads(v) for k, v in self._query("SELECT key, value FROM meta")}

    def pairs(self) -> list[dict]:
        """Every reviewed pair as a dict of :data:`PAIR_COLUMNS`, in pair-file order."""
        rows = self._query(f"SELECT {','.join(PAIR_COLUMNS)} FROM pairs ORDER BY pos")
        return [dict(zip(PAIR_COLUMNS, row)) for row in rows]

    # ------------------------------------------------------------------ decisions

    def decisions(self) -> dict[int, dict]:
        """Current decision per decided pair: ``{pos: {decision, reviewer, time}}``."""
        rows = self._query("SELECT pair, decision, reviewer, time FROM decisions")
        return {pos: {"decision": d, "reviewer": r, "time": t} for pos, d, r, t in rows}

    def counts(self) -> dict[str, int]:
        """Pairs, and how many are accepted, rejected, skipped and unreviewed (no decision)."""
        total = self._query("SELECT COUNT(*) FROM pairs")[0][0]
        by = dict(self._query("SELECT decision, COUNT(*) FROM decisions GROUP BY decision"))
        out = {"pairs": total, **{d: by.get(d, 0) for d in DECISIONS}}
        out["unreviewed"] = total - sum(by.values())
        return out

    def _state(self, db: sqlite3.Connection, pair: int) -> dict:
        row = db.execute("SELECT decision FROM decisions WHERE pair=?", (pair,)).fetchone()
        return {"pair": pair, "decision": row[0] if row else None}

    def _replayed(self, db: sqlite3.Connection, request_id: str) -> dict | None:
        """The answer to a request already applied (a retry or a second tab), or None."""
        row = db.execute("SELECT pair FROM events WHERE request_id=?", (request_id,)).fetchone()
        return None if row is None else {**self._state(db, row[0]), "replayed": True}

    def decide(self, pair: int, decision: str, reviewer: str, request_id: str) -> dict:
        """Record ``decision`` for pair ``pair``; the same ``request_id`` twice applies once.

        Returns ``{pair, decision, replayed}`` (the pair's current decision after the call).
        """
        if decision not in DECISIONS:
            raise ReviewError(f"decision {decision!r}: use one of {', '.join(DECISIONS)}")
        with self._transaction() as db:
            done = self._replayed(db, request_id)
            if done is not None:
                return done
            if db.execute("SELECT 1 FROM pairs WHERE pos=?", (pair,)).fetchone() is None:
                raise ReviewError(f"pair {pair} is not in this review ({self.path})")
            prev = db.execute("SELECT event FROM decisions WHERE pair=?", (pair,)).fetchone()
            now = _now()
            event = db.execute(
                "INSERT INTO events (request_id, pair, decision, previous_event, reviewer, time) VALUES (?,?,?,?,?,?)",
                (request_id, pair, decision, prev[0] if prev else None, reviewer, now)).lastrowid
            db.execute("INSERT OR REPLACE INTO decisions VALUES (?,?,?,?,?)", (pair, decision, reviewer, now, event))
            return {"pair": pair, "decision": decision, "replayed": False}

    def undo(self, undo_request: str, reviewer: str, request_id: str) -> dict:
        """Undo the decision made by request ``undo_request``: its pair gets back the decision it had before.

        Raises :class:`UndoConflict` when that decision is no longer the pair's current one.
        """
        with self._transaction() as db:
            done = self._replayed(db, request_id)
            if done is not None:
                return done
            row = db.execute("SELECT id, pair, previous_event FROM events WHERE request_id=? AND decision IS NOT NULL",
                             (undo_request,)).fetchone()
            if row is None:
                raise ReviewError(f"no decision was made by request {undo_request!r}: nothing to undo")
            event, pair, previous = row
            current = db.execute("SELECT event FROM decisions WHERE pair=?", (pair,)).fetchone()
            if current is None or current[0] != event:
                raise UndoConflict(f"pair {pair} was decided again after that decision (another tab or reviewer); "
                                   "reload the page to see its current decision")
            restored = None
            if previous is None:
                db.execute("DELETE FROM decisions WHERE pair=?", (pair,))
            else:
                restored, by, at = db.execute("SELECT decision, reviewer, time FROM events WHERE id=?", (previous,)).fetchone()
                db.execute("INSERT OR REPLACE INTO decisions VALUES (?,?,?,?,?)", (pair, restored, by, at, previous))
            db.execute("INSERT INTO events (request_id, pair, decision, previous_event, undoes, reviewer, time) "
                       "VALUES (?,?,NULL,?,?,?,?)", (request_id, pair, previous, event, reviewer, _now()))
            return {"pair": pair, "decision": restored, "replayed": False}

    def reviewers(self) -> dict[str, int]:
        """Current decisions per reviewer."""
        return dict(self._query("SELECT reviewer, COUNT(*) FROM decisions GROUP BY reviewer ORDER BY reviewer"))

    def time_span(self) -> tuple[str | None, str | None]:
        """UTC times of the first and the last event."""
        return tuple(self._query("SELECT MIN(time), MAX(time) FROM events")[0])
