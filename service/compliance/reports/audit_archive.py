"""The audit trail beyond Redis: archived segments and anchors in the report storage, and the
verification of the whole chain (segments, then Redis).

- ``audit/segments/{first:012d}-{last:012d}.jsonl.gz``: entries in order, one JSON object a line,
  exactly the strings Redis held (the chain goes on from one segment to the next and into Redis);
- ``audit/anchors/{seq:012d}.json``: the chain's end (sequence number and link hash) when an
  archive pass ran. Verification checks that the chain still passes through every anchor, so a
  rewrite of Redis up to an anchor is found even when it recomputed every link.

``archive`` runs from ``compliance audit archive`` and from ``compliance cleanup`` (the chart's
retention CronJob); one archiver at a time holds a Redis lock.
"""

from __future__ import annotations

import gzip
import json
import logging
import math
import re
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

from compliance.reports.storage import ReportStorage, StorageError, StorageNotFoundError
from compliance.store.audit import GENESIS, AuditEntry, AuditStore

log = logging.getLogger(__name__)

SEGMENT_PREFIX = "audit/segments/"
ANCHOR_PREFIX = "audit/anchors/"
_SEGMENT = re.compile(r"^audit/segments/(\d{12})-(\d{12})\.jsonl\.gz$")
_ANCHOR = re.compile(r"^audit/anchors/(\d{12})\.json$")


@dataclass(frozen=True, slots=True)
class Segment:
    """One archived segment: its key and the sequence numbers its name claims."""

    key: str
    first: int
    last: int


def segment_key(first: int, last: int) -> str:
    """Where the entries ``first``..``last`` are archived."""
    return f"{SEGMENT_PREFIX}{first:012d}-{last:012d}.jsonl.gz"


def _listed(storage: ReportStorage, prefix: str) -> list[str]:
    return sorted(storage.keys_older_than(prefix, math.inf))


def segments(storage: ReportStorage) -> list[Segment]:
    """Archived segments in sequence order (objects under audit/segments/ with another name are
    ignored)."""
    found = []
    for key in _listed(storage, SEGMENT_PREFIX):
        match = _SEGMENT.match(key)
        if match:
            found.append(Segment(key=key, first=int(match[1]), last=int(match[2])))
    return sorted(found, key=lambda s: (s.first, s.last))


def encode_segment(entries: list[AuditEntry]) -> bytes:
    """Entries as gzip'd JSON lines (no timestamp in the gzip header: same entries, same bytes)."""
    lines = "".join(json.dumps(e.as_json(), ensure_ascii=False, separators=(",", ":")) + "\n"
                    for e in entries)
    return gzip.compress(lines.encode(), mtime=0)


@dataclass(frozen=True, slots=True)
class ArchiveResult:
    """What one archive pass did."""

    archived: int
    segments_written: int
    anchor: str | None
    skipped: str | None = None  # why nothing was done (another archiver holds the lock)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


def archive(store: AuditStore, storage: ReportStorage, *, before: float, segment_entries: int,
            lock_ttl: int = 900) -> ArchiveResult:
    """Move entries written before ``before`` (epoch seconds) from Redis to segments, then write
    an anchor of the chain's end.

    A segment is written first and trimmed from Redis after; a pass that dies in between leaves
    entries in both, and the next pass trims them (the segments are the truth of what moved).
    """
    token = uuid.uuid4().hex
    if not store.lock(token, lock_ttl):
        return ArchiveResult(archived=0, segments_written=0, anchor=None,
                             skipped="another archive pass holds the lock")
    try:
        done = max((s.last for s in segments(storage)), default=0)
        if store.head().archived < done:
            store.trim_through(done)
        archived = written = 0
        while True:
            batch: list[AuditEntry] = []
            for entry in store.entries(after=done, batch=min(segment_entries, 1000)):
                if entry.at >= before or len(batch) >= segment_entries:
                    break
                batch.append(entry)
            if not batch:
                break
            key = segment_key(batch[0].seq, batch[-1].seq)
            storage.put(key, encode_segment(batch), content_type="application/gzip")
            store.trim_through(batch[-1].seq)
            done = batch[-1].seq
            archived += len(batch)
            written += 1
            log.info("audit segment archived", extra={
                "key": key, "entries": len(batch), "last_seq": batch[-1].seq,
                "last_link": batch[-1].link()})
        anchor = write_anchor(store, storage)
        return ArchiveResult(archived=archived, segments_written=written, anchor=anchor)
    finally:
        store.unlock(token)


def write_anchor(store: AuditStore, storage: ReportStorage) -> str | None:
    """Keep the chain's end in storage (and in the log): a later rewrite of Redis up to it is
    found by ``verify``. None on an empty chain."""
    head = store.head()
    if head.seq == 0:
        return None
    key = f"{ANCHOR_PREFIX}{head.seq:012d}.json"
    storage.put(key, json.dumps({"seq": head.seq, "hash": head.hash}).encode())
    log.info("audit anchor written", extra={"key": key, "seq": head.seq, "link": head.hash})
    return key


@dataclass(frozen=True, slots=True)
class Problem:
    """The first entry where the chain breaks."""

    seq: int
    where: str  # "redis" or a segment's key
    reason: str

    def __str__(self) -> str:
        return f"audit chain broken at entry {self.seq} ({self.where}): {self.reason}"


@dataclass(frozen=True, slots=True)
class Verdict:
    """What ``verify`` found."""

    checked: int
    segments: int
    last_seq: int
    last_link: str
    anchors: int
    problem: Problem | None

    @property
    def ok(self) -> bool:
        """The chain is intact."""
        return self.problem is None


class _Broken(Exception):
    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


def _segment_entries(storage: ReportStorage, segment: Segment) -> Iterator[AuditEntry]:
    try:
        text = gzip.decompress(storage.get(segment.key)).decode()
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise _Broken(Problem(segment.first, segment.key,
                              f"the segment cannot be read ({type(exc).__name__})")) from exc
    for number, line in enumerate(text.splitlines(), 1):
        try:
            yield AuditEntry.from_json(json.loads(line))
        except (ValueError, KeyError, TypeError) as exc:
            raise _Broken(Problem(segment.first, segment.key,
                                  f"line {number} is not an audit entry")) from exc


def _located(storage: ReportStorage, found: list[Segment], store: AuditStore,
             until: int) -> Iterator[tuple[AuditEntry, str]]:
    last = 0
    for segment in found:
        for entry in _segment_entries(storage, segment):
            last = max(last, entry.seq)
            yield entry, segment.key
    # Entries still in Redis that a pass archived but did not trim yet are the segments' own;
    # entries appended since the head was read are left to the next verification.
    for entry in store.entries(after=last):
        if entry.seq > until:
            return
        yield entry, "redis"


def verify(store: AuditStore, storage: ReportStorage,
           anchors: Iterable[tuple[int, str]] = ()) -> Verdict:
    """Walk the whole chain (archived segments in order, then Redis) and name the first entry
    that was changed, deleted or moved; also check the chain's end against the head Redis keeps
    and every anchor (those in storage and ``anchors``: (seq, link) pairs known elsewhere)."""
    found = segments(storage)
    expected: dict[int, str] = dict(anchors)
    stored_anchors = 0
    for key in _listed(storage, ANCHOR_PREFIX):
        match = _ANCHOR.match(key)
        if not match:
            continue
        try:
            data = json.loads(storage.get(key))
            expected.setdefault(int(data["seq"]), str(data["hash"]))
        except (ValueError, KeyError, TypeError, StorageNotFoundError) as exc:
            raise StorageError(f"anchor {key} cannot be read: {exc}") from exc
        stored_anchors += 1
    head = store.head()
    checked = 0
    prev_link, prev_seq, prev_where = GENESIS, 0, "start"
    problem: Problem | None = None
    walk = _located(storage, found, store, until=head.seq)
    try:
        pending = next(walk, None)
        while pending is not None:
            entry, where = pending
            following = next(walk, None)
            if entry.seq > prev_seq + 1:
                missing = (f"entry {prev_seq + 1} is missing" if entry.seq == prev_seq + 2 else
                           f"entries {prev_seq + 1} to {entry.seq - 1} are missing")
                raise _Broken(Problem(prev_seq + 1, where,
                                      f"{missing} (deleted): entry {entry.seq} follows entry "
                                      f"{prev_seq}"))
            if entry.seq <= prev_seq:
                raise _Broken(Problem(entry.seq, where,
                                      f"out of order: it follows entry {prev_seq} "
                                      "(moved or duplicated)"))
            link = entry.link()
            if entry.prev != prev_link:
                # Either the entry before was changed (then this entry's own link still leads
                # on to the next one) or this entry's prev was.
                next_prev = (following[0].prev if following is not None
                             else head.hash if head.seq == entry.seq else None)
                if prev_seq and next_prev == link:
                    raise _Broken(Problem(prev_seq, prev_where,
                                          f"its content was changed: entry {entry.seq} carries "
                                          "another hash for it"))
                raise _Broken(Problem(entry.seq, where,
                                      f"it does not carry entry {prev_seq}'s hash (changed)"))
            if entry.seq in expected and expected[entry.seq] != link:
                raise _Broken(Problem(entry.seq, where,
                                      "the chain does not pass through the anchor kept for this "
                                      "entry: it was rewritten up to here"))
            checked += 1
            prev_link, prev_seq, prev_where = link, entry.seq, where
            pending = following
        if head.seq > prev_seq:
            missing = (f"entry {prev_seq + 1} is missing" if head.seq == prev_seq + 1 else
                       f"entries {prev_seq + 1} to {head.seq} are missing")
            raise _Broken(Problem(prev_seq + 1, "redis",
                                  f"{missing} (deleted): the chain's end in Redis is entry "
                                  f"{head.seq}"))
        if prev_seq and head.seq == prev_seq and head.hash != prev_link:
            raise _Broken(Problem(prev_seq, prev_where,
                                  "its content was changed: the chain's end in Redis carries "
                                  "another hash for it"))
        beyond = [seq for seq in expected if seq > prev_seq]
        if beyond:
            raise _Broken(Problem(min(beyond), "redis",
                                  "an anchor names this entry, which the chain no longer has "
                                  "(deleted)"))
    except _Broken as broken:
        problem = broken.problem
    return Verdict(checked=checked, segments=len(found), last_seq=prev_seq, last_link=prev_link,
                   anchors=stored_anchors, problem=problem)
