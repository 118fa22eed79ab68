"""The built-in facade and its shipped packs, without services."""

from __future__ import annotations

import csv
import io

import pytest

from compliance.reports import render
from compliance.reports.engine import BuiltinFacade, PackError, evaluate_control, load_packs, parse_pack
from compliance.reports.facade import ComplianceFacade, Outcome, load_facade
from compliance.settings import Settings
from tests.reports import evidence as ev

PACK_CASES = [
    ("cloud-baseline", ev.cloud_pass, ev.cloud_mixed, ev.CLOUD_MIXED_FAILED, ev.CLOUD_MIXED_NA),
    ("soc2-access-control", ev.soc2_pass, ev.soc2_mixed, ev.SOC2_MIXED_FAILED, ev.SOC2_MIXED_NA),
]


@pytest.fixture(scope="module")
def facade() -> BuiltinFacade:
    return BuiltinFacade()


def outcomes(doc) -> dict[str, str]:
    return {r.id: r.outcome.value for r in doc.results}


def test_shipped_packs_load_with_at_least_ten_real_controls_each(facade):
    frameworks = {f.id: f for f in facade.frameworks()}
    assert set(frameworks) == {"cloud-baseline", "soc2-access-control"}
    for framework in frameworks.values():
        assert len(framework.controls) >= 10
        assert {c.severity for c in framework.controls} <= {"critical", "high", "medium", "low"}
    assert facade.health()["status"] == "up"
    assert isinstance(facade, ComplianceFacade)


@pytest.mark.parametrize(("framework", "good", "mixed", "failed", "na"), PACK_CASES)
def test_evidence_that_passes_every_control(facade, framework, good, mixed, failed, na):
    doc = facade.evaluate(report_id="rpt_x", framework=framework, subject="acme", evidence=good())
    assert set(outcomes(doc).values()) == {"pass"}, outcomes(doc)
    assert doc.summary.score == 100.0 and doc.summary.compliant
    assert doc.summary.passed == doc.summary.total == len(doc.results)


@pytest.mark.parametrize(("framework", "good", "mixed", "failed", "na"), PACK_CASES)
def test_evidence_that_fails_some_and_leaves_some_not_applicable(facade, framework, good, mixed,
                                                                 failed, na):
    doc = facade.evaluate(report_id="rpt_x", framework=framework, subject="acme", evidence=mixed())
    got = outcomes(doc)
    assert {k for k, v in got.items() if v == "fail"} == failed
    assert {k for k, v in got.items() if v == "not_applicable"} == na
    s = doc.summary
    assert (s.failed, s.not_applicable, s.passed) == (len(failed), len(na), s.total - len(failed) - len(na))
    assert not s.compliant and s.score is not None and 0 < s.score < 100
    assert s.failed_by_severity == {
        sev: sum(1 for r in doc.results if r.outcome is Outcome.FAIL and r.severity == sev)
        for sev in ("critical", "high", "medium", "low")}
    for result in doc.results:
        assert result.evidence_paths and result.remediation


def test_failing_controls_name_their_offenders(facade):
    doc = facade.evaluate(report_id="rpt_x", framework="cloud-baseline", subject="a",
                          evidence=ev.cloud_mixed())
    by_id = {r.id: r for r in doc.results}
    assert by_id["CB-1.4"].offenders == ["bob"]
    assert by_id["CB-1.5"].offenders == ["AKIA1"]
    assert by_id["CB-2.1"].offenders == ["data"]
    assert by_id["CB-5.1"].offenders == ["sg-ssh"]
    assert "iam.users[].mfa_enabled" in by_id["CB-1.4"].evidence_paths


def test_malformed_evidence_fails_controls_instead_of_crashing(facade):
    evidence = ev.cloud_pass()
    evidence["iam"]["users"] = "alice,bob"  # a string where a list belongs
    evidence["storage"]["buckets"] = [{"name": "x", "encrypted": "yes"}]  # truthy, but not true
    doc = facade.evaluate(report_id="rpt_x", framework="cloud-baseline", subject="a", evidence=evidence)
    got = outcomes(doc)
    assert got["CB-2.2"] == "fail"
    assert all(got[c] in ("fail", "not_applicable") for c in ("CB-1.4", "CB-1.5", "CB-1.6"))
    assert doc.summary.failed >= 2


def test_missing_evidence_never_passes(facade):
    doc = facade.evaluate(report_id="rpt_x", framework="soc2-access-control", subject="a",
                          evidence={"identity": {"sso_enforced": True}})
    got = outcomes(doc)
    assert got["AC-01"] == "pass"
    assert got["AC-04"] == "fail"  # timeout not given: not demonstrated
    empty = facade.evaluate(report_id="rpt_x", framework="soc2-access-control", subject="a",
                            evidence={"users": []})
    assert empty.summary.passed == 0 and empty.summary.score is None and not empty.summary.compliant


def test_evidence_shape_checks_for_the_api(facade):
    assert facade.check_evidence("cloud-baseline", ev.cloud_pass()) == []
    problems = facade.check_evidence("cloud-baseline", {"iam": [], "databases": {}})
    assert {p.path for p in problems} == {"iam", "databases"}
    (nothing,) = facade.check_evidence("soc2-access-control", {"unrelated": 1})
    assert nothing.path == "" and "identity" in nothing.message


PACK = """
id: demo
title: Demo
version: "1"
evidence: {a: object}
controls:
  - id: D-1
    title: A is on
    severity: low
    check: "a.on == `true`"
    evidence_paths: [a.on]
    remediation: Turn a on, please.
"""


@pytest.mark.parametrize(("change", "message"), [
    (("a.on == `true`", "a.on == "), "invalid JMESPath"),
    (("a.on == `true`", "a.off == `true`"), "not listed in evidence_paths"),
    (("severity: low", "severity: urgent"), "severity"),
    (("evidence: {a: object}", "evidence: {a: thing}"), "type must be one of"),
    (("evidence: {a: object}", "evidence: {b: object}"), "undeclared sections"),
    (("remediation: Turn a on, please.", "remediation: Turn a on, please.\n    extra: 1"), "extra"),
])
def test_invalid_packs_are_refused_with_a_reason(change, message):
    assert parse_pack(PACK, source="demo.yaml").controls[0].id == "D-1"
    with pytest.raises(PackError, match=message):
        parse_pack(PACK.replace(*change), source="demo.yaml")
    with pytest.raises(PackError, match="duplicate control ids"):
        text = PACK + PACK[PACK.index("  - id"):]
        parse_pack(text, source="demo.yaml")


def test_evidence_values_are_data_never_code():
    control = parse_pack(PACK, source="demo.yaml").controls[0]
    assert evaluate_control(control, {"a": {"on": True}}).outcome is Outcome.PASS
    assert evaluate_control(control, {"a": {"on": "__import__('os').system('x')"}}).outcome is Outcome.FAIL


def test_facade_is_chosen_by_import_path(settings: Settings):
    assert isinstance(load_facade(settings), BuiltinFacade)
    other = settings.model_copy(update={"facade_class": "tests.reports.facades:SlowFacade"})
    assert type(load_facade(other)).__name__ == "SlowFacade"
    with pytest.raises(ValueError, match="module:Class"):
        load_facade(settings.model_copy(update={"facade_class": "nocolon"}))
    with pytest.raises(TypeError, match="ComplianceFacade"):
        load_facade(settings.model_copy(update={"facade_class": "tests.reports.facades:NotAFacade"}))


def test_renderings_carry_every_control(facade):
    doc = facade.evaluate(report_id="rpt_x", framework="cloud-baseline", subject="<b>acme</b>",
                          evidence=ev.cloud_mixed())
    rows = list(csv.DictReader(io.StringIO(render.to_csv(doc))))
    assert [r["control_id"] for r in rows] == [r.id for r in doc.results]
    assert {r["control_id"] for r in rows if r["outcome"] == "fail"} == ev.CLOUD_MIXED_FAILED
    page = render.to_html(doc)
    assert "&lt;b&gt;acme&lt;/b&gt;" in page and "<b>acme" not in page
    assert page.count("<tr class=") == len(doc.results)
    assert len(load_packs()) == 2


def test_score_is_the_severity_weighted_share_of_applicable_controls():
    from compliance.reports.facade import ControlResult, summarize

    def result(severity, outcome):
        return ControlResult(id="x", title="x", severity=severity, outcome=outcome, reason="",
                             evidence_paths=["a"], remediation="r")

    summary = summarize([result("critical", Outcome.PASS), result("low", Outcome.FAIL),
                         result("high", Outcome.NOT_APPLICABLE)])
    assert summary.score == round(100 * 10 / 11, 1)
    assert (summary.passed, summary.failed, summary.not_applicable) == (1, 1, 1)
    assert summary.failed_by_severity["low"] == 1 and not summary.compliant
