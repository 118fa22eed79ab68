"""Pure policy: demand -> replicas, stabilisation, max step, breaker hold, deletion costs."""

from __future__ import annotations

import pytest

from compliance.store.records import BreakerState
from compliance_operator.policy import (
    PEERING_PRIORITY_RANGE,
    Observation,
    Recommendation,
    ScalePolicy,
    backlog_share,
    breaker_counts,
    decide,
    deletion_costs,
    held_from_replies,
    peering_priority,
    raw_replicas,
)

P = ScalePolicy(min_replicas=1, max_replicas=10, target_per_replica=10, up_window=0, up_max_step=4,
                down_window=300, down_max_step=1)


@pytest.mark.parametrize(("demand", "target", "lo", "hi", "want"), [
    (0, 10, 1, 10, 1),      # idle keeps the floor
    (0, 10, 0, 10, 0),      # scale to zero allowed when min is 0
    (1, 10, 0, 10, 1),      # one task needs one replica
    (10, 10, 1, 10, 1),
    (11, 10, 1, 10, 2),     # ceil
    (95, 10, 1, 10, 10),
    (5000, 10, 1, 10, 10),  # capped
    (30, 10, 5, 10, 5),     # floor wins
])
def test_raw_replicas_is_clamped_ceiling(demand: int, target: int, lo: int, hi: int, want: int) -> None:
    assert raw_replicas(demand, target_per_replica=target, min_replicas=lo, max_replicas=hi) == want


def obs(current: int, queued: int, in_flight: int = 0, now: float = 1000.0, **kw: object) -> Observation:
    return Observation(now=now, current_replicas=current, queue_length=queued, in_flight=in_flight,
                       **kw)  # type: ignore[arg-type]


H = Recommendation


@pytest.mark.parametrize(("policy", "observation", "history", "desired", "reason"), [
    # backlog raises replicas, limited by the max step
    (P, obs(1, 35), [], 4, "ScaleUp"),
    (P, obs(1, 200), [], 5, "ScaleUp"),
    # unacked (reserved) tasks are demand too: an empty list does not mean idle
    (P, obs(1, 0, in_flight=40), [], 4, "ScaleUp"),
    (P, obs(4, 0, in_flight=40), [], 4, "Stable"),
    # scale-down waits for the window: a recent high recommendation holds the count
    (P, obs(4, 0), [H(900, 4)], 4, "Stabilizing"),
    # ... and once quiet for the whole window, steps down by at most one
    (P, obs(4, 0), [H(600, 4), H(800, 1)], 3, "ScaleDown"),
    # old recommendations outside the window are forgotten
    (P, obs(4, 0), [H(100, 9)], 3, "ScaleDown"),
    # scale-up window: only the lowest recommendation in the window counts
    (ScalePolicy(1, 10, 10, up_window=60), obs(1, 100), [H(950, 2)], 2, "ScaleUp"),
    (ScalePolicy(1, 10, 10, up_window=60), obs(2, 100), [H(950, 2)], 2, "Stabilizing"),
    # bounds always win, even against a breaker hold or a window
    (P, obs(0, 0), [], 1, "ScaleUp"),
    (P, obs(15, 500), [], 10, "ScaleDown"),
    (P, obs(0, 500, open_breakers=3, known_breakers=3), [], 1, "ScaleUp"),
    # open breakers hold scale-up ...
    (P, obs(2, 200, open_breakers=1, known_breakers=2), [], 2, "BreakerHold"),
    (P, obs(2, 200, open_breakers=1, known_breakers=10, open_backlog_share=0.9), [], 2, "BreakerHold"),
    # ... but not below the threshold, and never scale-down
    (P, obs(2, 200, open_breakers=1, known_breakers=10, open_backlog_share=0.1), [], 6, "ScaleUp"),
    (P, obs(4, 0, open_breakers=2, known_breakers=2), [H(600, 1)], 3, "ScaleDown"),
    # a disabled breaker policy never holds
    (ScalePolicy(1, 10, 10, breaker_enabled=False), obs(1, 30, open_breakers=5, known_breakers=5), [], 3,
     "ScaleUp"),
    (P, obs(3, 30), [], 3, "Stable"),
])
def test_decide_table(policy: ScalePolicy, observation: Observation, history: list[Recommendation],
                      desired: int, reason: str) -> None:
    decision = decide(policy, observation, history)
    assert (decision.desired, decision.reason) == (desired, reason), decision.message
    assert decision.breaker_hold == (reason == "BreakerHold")


def test_no_scale_down_until_the_history_covers_the_window() -> None:
    """A fresh (or restarted, status-less) operator has no evidence the current count is too high."""
    assert decide(P, obs(4, 0, now=1000), [], observing_since=1000).reason == "Stabilizing"
    assert decide(P, obs(4, 0, now=1299), [], observing_since=1000).desired == 4
    assert decide(P, obs(4, 0, now=1300), [], observing_since=1000).desired == 3
    # ... but it scales up at once
    assert decide(P, obs(1, 100, now=1000), [], observing_since=1000).desired == 5


def test_history_keeps_only_the_longest_window_plus_now() -> None:
    decision = decide(P, obs(2, 0, now=1000), [H(100, 9), H(800, 3)])
    assert decision.history == (H(800, 3), H(1000, 1))


def test_history_is_compacted_without_changing_decisions() -> None:
    history = [H(900 + i, 4) for i in range(50)] + [H(960, 2), H(970, 2)]
    decision = decide(P, obs(4, 0, now=1000), history)
    assert decision.history == (H(949, 4), H(970, 2), H(1000, 1))
    assert decide(P, obs(4, 0, now=1000), decision.history).desired == decision.desired == 4


def test_empty_queue_scales_down_one_step_per_window() -> None:
    """Simulate polls every 15 s: 5 replicas drain to 1 only after the 300 s window, then 1/poll."""
    history: tuple[Recommendation, ...] = (H(0, 5),)
    current, now, seen = 5, 0.0, []
    while now < 400:
        now += 15
        decision = decide(P, obs(current, 0, now=now), history)
        history, current = decision.history, decision.desired
        seen.append((now, current))
    first_drop = next(t for t, c in seen if c < 5)
    assert first_drop > 300
    assert [c for t, c in seen if t > first_drop][:3] == [3, 2, 1]


def test_breaker_counts_ignore_stale_closed_destinations() -> None:
    states = [BreakerState("https://a:443", "open", 5, 990.0, 1, 990.0),
              BreakerState("https://b:443", "half_open", 5, 900.0, 2, 995.0),
              BreakerState("https://c:443", "closed", 0, None, 0, 999.0),
              BreakerState("https://old:443", "closed", 0, None, 0, 1.0)]
    assert breaker_counts(states, now=1000.0, active_window=600) == (2, 3, {"https://a:443", "https://b:443"})


def test_backlog_share() -> None:
    assert backlog_share({}, {"x"}, ready=0) is None
    assert backlog_share({"x": 3, "y": 1}, {"x"}, ready=0) == 0.75
    assert backlog_share({"x": 3}, {"x"}, ready=1) == 0.75  # ready signals count as waiting
    assert backlog_share({"y": 4}, {"x"}, ready=0) == 0.0


def test_deletion_costs_mark_busy_pods_and_skip_unchanged() -> None:
    pods = {"p-busy": None, "p-idle": "5", "p-same": "2", "p-silent": None}
    held = {"p-busy": 3, "p-idle": 0, "p-same": 2, "other-pod": 9}
    assert deletion_costs(pods, held) == {"p-busy": 3, "p-idle": 0}
    assert deletion_costs(pods, None) == {}


@pytest.mark.parametrize(("replies", "expected"), [
    # every worker answered all three: active + reserved + scheduled per pod
    ([{"deliveries@p1": [{}], "deliveries@p2": []}, {"deliveries@p1": [{}, {}], "deliveries@p2": []},
      {"deliveries@p1": [], "deliveries@p2": []}], {"p1": 3, "p2": 0}),
    # p2 missed the "reserved" reply: it may hold tasks there, so it is not counted (not "idle")
    ([{"deliveries@p1": [], "deliveries@p2": []}, {"deliveries@p1": [{}]},
      {"deliveries@p1": [], "deliveries@p2": []}], {"p1": 1}),
    # a query nobody answered (None) means no worker's count is complete
    ([{"deliveries@p1": []}, None, {"deliveries@p1": []}], None),
    ([None, None, None], None),
])
def test_held_tasks_count_only_workers_that_answered_every_query(replies, expected) -> None:
    assert held_from_replies(replies) == expected


def test_the_engines_deliveries_count_as_held() -> None:
    replies = [{"deliveries@p1": [], "deliveries@p2": [], "reports@p3": []}] * 3
    engine = [{"deliveries@p1": {"in_flight": 212}}, {"deliveries@p2": {"in_flight": 0}},
              {"reports@p3": {"error": "No such control command: engine_in_flight"}},
              {"deliveries@p4": {"in_flight": 9}},  # missed the inspect queries: not counted
              {"deliveries@p2": {"in_flight": True}}]  # not a count
    assert held_from_replies(replies, engine) == {"p1": 212, "p2": 0, "p3": 0}


def _never(low: int, high: int) -> int:
    raise AssertionError("no draw expected")


@pytest.mark.parametrize(("configured", "cli", "expected"), [
    (50, 0, 50),      # set by hand: ranks replicas deliberately
    (50, 666, 50),    # the setting beats the command line
    (None, 666, 666), # `kopf run --dev` / `--priority 666` keeps its priority
])
def test_peering_priority_given(configured, cli, expected) -> None:
    assert peering_priority(configured, cli, _never) == expected


def test_peering_priority_is_drawn_when_nothing_is_given() -> None:
    """Replicas must not tie (kopf pauses every operator that ties), so each draws its own."""
    assert peering_priority(None, 0, lambda low, high: high) == PEERING_PRIORITY_RANGE[1]
    assert PEERING_PRIORITY_RANGE[0] >= 1  # above kopf's default 0: a stray default operator never wins
