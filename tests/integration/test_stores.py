"""Status and dead-letter stores against a real redis-server."""

from __future__ import annotations

import base64
import time

import pytest

from compliance.store import keys
from compliance.store.dead_letters import DeadLetterFilter, DeadLetterStore
from compliance.store.records import Attempt, DeadLetter, Status, WebhookStatus
from compliance.store.statuses import StatusStore, decode_cursor


def record(i: int, status: Status = Status.PENDING, at: float | None = None) -> WebhookStatus:
    now = at if at is not None else time.time()
    return WebhookStatus(webhook_id=f"wh_{i:05d}", destination="https://example.com/h",
                         event="report.completed", status=status, created_at=now, updated_at=now)


@pytest.fixture
def statuses(r, settings):
    return StatusStore(r, settings)


@pytest.fixture
def dlq(r, settings):
    return DeadLetterStore(r, settings)


@pytest.mark.parametrize(("status", "ttl"), [
    (Status.PENDING, 604800), (Status.RETRYING, 604800),
    (Status.DELIVERED, 1800), (Status.FAILED, 604800),
])
def test_ttl_per_status_read_back_from_redis(statuses, r, status, ttl):
    statuses.put(record(1, status))
    assert ttl - 5 <= r.ttl("webhook_status:wh_00001") <= ttl


def test_status_change_reapplies_ttl_and_moves_index(statuses, r):
    statuses.put(record(1, Status.PENDING))
    assert r.ttl("webhook_status:wh_00001") > 1800
    statuses.put(record(1, Status.DELIVERED))
    assert 0 < r.ttl("webhook_status:wh_00001") <= 1800
    assert r.zscore(keys.status_index(Status.PENDING), "wh_00001") is None
    assert r.zscore(keys.status_index(Status.DELIVERED), "wh_00001") is not None
    statuses.put(record(1, Status.RETRYING))
    assert r.ttl("webhook_status:wh_00001") > 1800


def test_index_keys_do_not_match_the_seed_patterns(statuses, dlq, r):
    statuses.put(record(1))
    dlq.put(DeadLetter(webhook_id="wh_1", destination="https://e.com", event="e", payload={},
                       error_type="http_4xx", error="x", created_at=1, failed_at=time.time()))
    assert len(r.keys("webhook_status:*")) == 1
    assert len(r.keys("dead_letter:webhook:*")) == 1


def test_paging_and_filtering_over_2000_records(statuses, r):
    base = time.time() - 1000
    pipe_records = []
    for i in range(2100):
        status = [Status.PENDING, Status.DELIVERED, Status.FAILED][i % 3]
        pipe_records.append(record(i, status, at=base + i * 0.25))
    for rec in pipe_records:
        statuses.put(rec)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = statuses.page(limit=500, cursor=cursor)
        pages += 1
        seen.extend(item.webhook_id for item in page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert pages == 5
    assert len(seen) == 2100 and len(set(seen)) == 2100
    assert seen[0] == "wh_02099" and seen[-1] == "wh_00000"  # newest first
    failed: list[str] = []
    cursor = None
    while True:
        page = statuses.page(status=Status.FAILED, limit=123, cursor=cursor)
        assert all(item.status is Status.FAILED for item in page.items)
        failed.extend(item.webhook_id for item in page.items)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert len(failed) == 700
    assert failed == sorted(failed, reverse=True)


def test_ties_on_the_same_score_are_not_skipped(statuses):
    for i in range(10):
        statuses.put(record(i, at=1_800_000_000.0 + 0 * i))
    # all share one score: paging by 3 must still return each exactly once
    got: list[str] = []
    cursor = None
    while True:
        page = statuses.page(limit=3, cursor=cursor)
        got.extend(i.webhook_id for i in page.items)
        cursor = page.next_cursor
        if not cursor:
            break
    assert sorted(got) == [f"wh_{i:05d}" for i in range(10)]


@pytest.mark.parametrize("score", ["nan", "inf", "-inf", "1e999"])
def test_decode_cursor_refuses_non_finite_scores(statuses, score):
    cursor = base64.urlsafe_b64encode(f"{score}|wh_00001".encode()).decode().rstrip("=")
    with pytest.raises(ValueError, match="malformed cursor"):
        decode_cursor(cursor)
    with pytest.raises(ValueError, match="malformed cursor"):
        statuses.page(limit=10, cursor=cursor)


def test_expired_records_are_pruned_from_indexes(statuses, r):
    for i in range(5):
        statuses.put(record(i))
    r.delete("webhook_status:wh_00001", "webhook_status:wh_00003")  # as if their TTL ran out
    page = statuses.page(limit=10)
    assert [i.webhook_id for i in page.items] == ["wh_00004", "wh_00002", "wh_00000"]
    assert sum(r.zcard(keys.status_index(s)) for s in Status) == 3
    assert r.zcard(keys.status_index(Status.PENDING)) == 3


def test_time_based_prune_drops_entries_older_than_their_ttl(statuses, r, settings):
    old = time.time() - settings.status_ttl_delivered - 10
    statuses.put(record(1, Status.DELIVERED, at=old))
    statuses.put(record(2, Status.DELIVERED))
    assert statuses.prune() == 1  # the all-index keeps it until a read finds the record gone
    assert r.zscore(keys.status_index(Status.DELIVERED), "wh_00001") is None
    assert r.zscore(keys.status_index(Status.DELIVERED), "wh_00002") is not None


def test_cleanup_by_status_and_age(statuses, r):
    now = time.time()
    statuses.put(record(1, Status.DELIVERED, at=now - 3 * 86400))
    statuses.put(record(2, Status.DELIVERED, at=now))
    statuses.put(record(3, Status.FAILED, at=now - 3 * 86400))
    statuses.put(record(4, Status.PENDING, at=now - 3 * 86400))
    assert statuses.cleanup(status=Status.DELIVERED, older_than_seconds=86400) == 1
    assert not r.exists("webhook_status:wh_00001")
    assert r.exists("webhook_status:wh_00002") and r.exists("webhook_status:wh_00003")
    assert statuses.cleanup(status=None, older_than_seconds=2 * 86400) == 2
    assert sorted(r.keys("webhook_status:*")) == ["webhook_status:wh_00002"]
    assert statuses.count() == 1 and statuses.count(Status.FAILED) == 0
    assert statuses.cleanup(status=Status.DELIVERED, older_than_seconds=0) == 1
    assert r.keys("webhook_status:*") == []


def test_cleanup_works_in_batches(statuses, r):
    for i in range(1200):
        statuses.put(record(i, Status.DELIVERED, at=time.time() - 100))
    assert statuses.cleanup(status=Status.DELIVERED, older_than_seconds=0, batch_size=100) == 1200
    assert r.keys("webhook_status:*") == []


def test_dead_letters_ttl_filter_and_single_claim(dlq, r):
    now = time.time()
    for i, (etype, dest, age) in enumerate([
        ("http_5xx", "https://a.example.com/x", 10), ("timeout", "https://b.example.com/y", 7200),
        ("http_5xx", "https://b.example.com/z", 100),
    ]):
        dlq.put(DeadLetter(webhook_id=f"wh_{i}", destination=dest, event="e", payload={"i": i},
                           attempts=[Attempt(at=now, error_type=etype)], error_type=etype,
                           error="boom", created_at=now - age, failed_at=now - age))
    assert 2592000 - 5 <= r.ttl("dead_letter:webhook:wh_0") <= 2592000
    assert [e.webhook_id for e in dlq.iter(DeadLetterFilter())] == ["wh_0", "wh_2", "wh_1"]
    assert [e.webhook_id for e in dlq.iter(DeadLetterFilter(error_type="http_5xx"))] == ["wh_0", "wh_2"]
    assert [e.webhook_id for e in dlq.iter(DeadLetterFilter(destination="https://b."))] == ["wh_2", "wh_1"]
    assert [e.webhook_id for e in dlq.iter(DeadLetterFilter(older_than_seconds=3600))] == ["wh_1"]
    assert [e.webhook_id for e in dlq.iter(DeadLetterFilter(newer_than_seconds=60))] == ["wh_0"]
    first = dlq.claim("wh_0")
    assert first is not None and dlq.claim("wh_0") is None
    dlq.remove("wh_0", replay_count=first.replay_count)
    assert dlq.size() == 2 and dlq.claim("wh_0") is None


def test_removing_a_replayed_entry_keeps_the_new_one_its_replay_wrote(r, settings):
    """A replay that fails again before the replayer removes the old entry (an instant 4xx, a
    refused URL) has already written a new entry (replay_count + 1): that one stays."""
    dlq = DeadLetterStore(r, settings)
    now = time.time()

    def entry(replays: int) -> DeadLetter:
        return DeadLetter(webhook_id="wh_again", destination="https://a.example.com/h", event="e",
                          payload={}, attempts=[Attempt(at=now, error_type="http_4xx")], error_type="http_4xx",
                          error="400", created_at=now, failed_at=now, replay_count=replays)

    dlq.put(entry(0))
    claimed = dlq.claim("wh_again")
    assert claimed is not None
    dlq.put(entry(1))  # the replayed delivery failed again, fast
    dlq.remove("wh_again", replay_count=claimed.replay_count)
    kept = dlq.get("wh_again")
    assert kept is not None and kept.replay_count == 1 and dlq.size() == 1
    assert dlq.claim("wh_again") is not None  # the claim ended: it can be replayed again


def put_dead_letters(dlq, kinds: list[str]) -> None:
    """One entry per item of ``kinds`` (its error type), the first one newest."""
    now = time.time()
    for i, etype in enumerate(kinds):
        dlq.put(DeadLetter(webhook_id=f"wh_{i:03d}", destination=f"https://{etype}.example.com/h",
                           event="e", payload={"i": i}, attempts=[Attempt(at=now, error_type=etype)],
                           error_type=etype, error="boom", created_at=now - i, failed_at=now - i))


def test_counted_page_total_counts_the_matches_not_the_dlq(dlq):
    put_dead_letters(dlq, ["timeout" if i % 3 == 0 else "http_5xx" for i in range(30)])
    timeouts = dlq.counted_page(DeadLetterFilter(error_type="timeout"), limit=4, offset=2)
    assert [e.webhook_id for e in timeouts.items] == ["wh_006", "wh_009", "wh_012", "wh_015"]
    assert (timeouts.total, timeouts.total_exact) == (10, True)
    by_host = dlq.counted_page(DeadLetterFilter(destination="https://http_5xx."), limit=50)
    assert (len(by_host.items), by_host.total, by_host.total_exact) == (20, 20, True)
    nothing = dlq.counted_page(DeadLetterFilter(error_type="dns"), limit=5)
    assert (nothing.items, nothing.total, nothing.total_exact) == ([], 0, True)
    everything = dlq.counted_page(DeadLetterFilter(), limit=5)
    assert (len(everything.items), everything.total, everything.total_exact) == (5, 30, True)


def test_counted_page_stops_counting_at_the_scan_limit(dlq):
    put_dead_letters(dlq, ["timeout"] * 30)
    dlq.count_scan_limit = 10
    capped = dlq.counted_page(DeadLetterFilter(error_type="timeout"), limit=3)
    assert (len(capped.items), capped.total, capped.total_exact) == (3, 10, False)
    # the page itself is always filled, even past the limit
    deep = dlq.counted_page(DeadLetterFilter(error_type="timeout"), limit=5, offset=20)
    assert [e.webhook_id for e in deep.items] == [f"wh_{i:03d}" for i in range(20, 25)]
    assert (deep.total, deep.total_exact) == (25, False)
    dlq.count_scan_limit = 30
    exact = dlq.counted_page(DeadLetterFilter(error_type="timeout"), limit=3)
    assert (exact.total, exact.total_exact) == (30, True)


def test_listing_every_status_merges_the_status_indexes_newest_first(statuses, r):
    """A record is indexed under its status only; the unfiltered listing merges the four, and
    its cursor walks them without a gap or a repeat, even where times are equal."""
    now = time.time()
    kinds = [Status.PENDING, Status.DELIVERED, Status.RETRYING, Status.FAILED]
    for i in range(23):
        statuses.put(record(i, kinds[i % 4], at=now - (i // 2)))  # pairs share a time
    statuses.put(record(5, Status.DELIVERED, at=now + 10))  # moved: now newest, in one index
    assert sum(r.zcard(keys.status_index(s)) for s in Status) == 23
    seen, cursor = [], None
    while True:
        page = statuses.page(limit=4, cursor=cursor)
        assert page.total == 23
        seen += [(item.updated_at, item.webhook_id) for item in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert len(seen) == 23 and len(set(seen)) == 23
    assert seen == sorted(seen, reverse=True)
    assert seen[0][1] == "wh_00005"


def test_a_stored_record_leaves_out_empty_fields_and_keeps_milliseconds(statuses, r):
    statuses.put(record(1, at=1796171892.9591234))
    raw = r.get("webhook_status:wh_00001")
    assert "null" not in raw and '"updated_at":1796171892.959' in raw
    assert statuses.get("wh_00001").last_error is None
