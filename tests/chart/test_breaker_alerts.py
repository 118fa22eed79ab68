"""The breaker alerts, unit-tested by promtool on series recorded from a real breaker cycle.

tests/chart/breaker_series.py drives the real BreakerStore on the test Redis through failures,
open, half-open and failed or successful probes, and samples circuit_breaker_state the way the
API computes it. Those samples are promtool's input: the alerts are tested on what the service
really produces, not on a hand-written "open for 4 minutes" that it never shows.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from tests.chart.breaker_series import SCENARIOS, SCRAPE_SECONDS, promtool_values, record
from tests.chart.render import CHART

RULES = CHART / "files/alerts.yaml"
STEADY, QUIET, BLIP = (s.destination for s in SCENARIOS)
MINUTES = 40
MISSED_SCRAPE = 24  # index of one failed scrape of the steady destination (12 minutes in)


def open_alert(destination: str) -> dict[str, Any]:
    return {"exp_labels": {"severity": "critical", "destination": destination},
            "exp_annotations": {
                "summary": f"Circuit breaker for {destination} not closed for 5 minutes",
                "description": "Deliveries to this destination are deferred (open, or half-open waiting for a "
                               "probe; a failed probe re-opens it). Check the receiver; reset with POST "
                               "/circuit-breakers/{name}/reset. See docs/runbook.md#circuit-breakers."}}


def half_open_alert(destination: str) -> dict[str, Any]:
    return {"exp_labels": {"severity": "warning", "destination": destination},
            "exp_annotations": {
                "summary": f"Circuit breaker for {destination} waits for a probe",
                "description": "Its reset timeout has passed, so the next delivery to it is a probe (success "
                               "closes the breaker, failure re-opens it). Still half-open means no delivery "
                               "has tried it since, usually because nothing is sent there."}}


def expectations() -> list[dict[str, Any]]:
    def at(minute: int, alert: str, *alerts: dict[str, Any]) -> dict[str, Any]:
        return {"eval_time": f"{minute}m", "alertname": alert, "exp_alerts": list(alerts)}

    opened, half = "ComplianceCircuitBreakerOpen", "ComplianceCircuitBreakerHalfOpen"
    return [
        at(7, opened),  # open (or half-open) for less than 5 minutes: nothing yet
        # steady failure flaps between open and half-open, and still alerts (through a missed
        # scrape); the quiet destination, never probed, reads half-open and alerts too; the
        # blip closed after 2 minutes and never does
        at(12, opened, open_alert(STEADY), open_alert(QUIET)),
        at(29, opened, open_alert(STEADY), open_alert(QUIET)),
        at(32, opened, open_alert(QUIET)),  # the steady receiver is back: its probe closed the breaker
        at(MINUTES, opened, open_alert(QUIET)),
        # half-open for 10 minutes only where nothing probes; the steady one re-opens each probe
        at(11, half),
        at(20, half, half_open_alert(QUIET)),
        at(MINUTES, half, half_open_alert(QUIET)),
    ]


def promtool_test(rules: Path, samples: dict[str, list[int | None]], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    series = []
    for destination, values in samples.items():
        text = promtool_values(values).split(" ")
        if destination == STEADY:
            text[MISSED_SCRAPE] = "stale"  # Prometheus writes a staleness marker when a scrape fails
        series.append({"series": f'circuit_breaker_state{{destination="{destination}",pod="api-1"}}',
                       "values": " ".join(text)})
    test = {"rule_files": [str(rules)], "evaluation_interval": "1m",
            "tests": [{"interval": f"{SCRAPE_SECONDS}s", "input_series": series,
                       "alert_rule_test": expectations()}]}
    path = tmp_path / "breaker_alerts_test.yaml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing: scripts/system-deps.sh installs Debian's prometheus package"
    return subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True)


@pytest.fixture
def samples(r: redis.Redis) -> dict[str, list[int | None]]:
    return record(r, minutes=MINUTES)


def test_the_recorded_cycle_is_the_real_one(samples: dict[str, list[int | None]]) -> None:
    """What the alerts must cope with, as the breaker really does it."""
    steady, quiet, blip = samples[STEADY], samples[QUIET], samples[BLIP]
    during = steady[steady.index(2):steady.index(0, steady.index(2))]
    assert set(during) == {1, 2}, "steady failure shows open and half-open in turn (failed probes re-open)"
    assert steady[-1] == 0, "a successful probe closed it"
    assert quiet.count(2) <= 2 and set(quiet[quiet.index(1):]) == {1}, (
        "with no traffic an open breaker reads half-open for good once its reset timeout passed")
    assert 2 in blip and blip[-1] == 0


def test_breaker_alerts_on_recorded_series(samples: dict[str, list[int | None]], tmp_path: Path) -> None:
    out = promtool_test(RULES, samples, tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_old_rules_fail_the_same_expectations(samples: dict[str, list[int | None]], tmp_path: Path) -> None:
    """The test bites: "== 2 for 1m" misses the quiet destination and drops the flapping one."""
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if rule["alert"] == "ComplianceCircuitBreakerOpen":
                rule.update(expr="max by (destination) (circuit_breaker_state) == 2", **{"for": "1m"})
    old = tmp_path / "old_alerts.yaml"
    old.write_text(yaml.safe_dump(rules, sort_keys=False))
    out = promtool_test(old, samples, tmp_path)
    assert out.returncode != 0
    assert "ComplianceCircuitBreakerOpen" in out.stdout + out.stderr
