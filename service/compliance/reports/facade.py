"""The compliance facade: the one interface report generation goes through, and its documents."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from compliance.settings import Settings

Severity = Literal["critical", "high", "medium", "low"]
# Weights of the score: a failed critical control costs more than a failed low one.
SEVERITY_WEIGHTS: dict[str, int] = {"critical": 10, "high": 5, "medium": 3, "low": 1}


class Outcome(StrEnum):
    """Result of one control."""

    PASS = "pass"  # noqa: S105 - not a password
    FAIL = "fail"
    NOT_APPLICABLE = "not_applicable"


class ControlInfo(BaseModel):
    """A control as clients see it in ``GET /frameworks``."""

    id: str
    title: str
    severity: Severity


class FrameworkInfo(BaseModel):
    """A framework (control pack) a report may be asked for."""

    id: str
    title: str
    version: str
    description: str = ""
    evidence_sections: dict[str, str] = Field(default_factory=dict)
    controls: list[ControlInfo]


class ControlResult(BaseModel):
    """One control evaluated against the evidence."""

    id: str
    title: str
    severity: Severity
    outcome: Outcome
    reason: str
    evidence_paths: list[str]
    offenders: list[Any] = Field(default_factory=list)
    remediation: str


class Summary(BaseModel):
    """Counts and a severity-weighted score (percent of applicable weight that passed).

    ``compliant`` needs at least one passed control: evidence that matched nothing proves nothing.
    """

    total: int
    passed: int
    failed: int
    not_applicable: int
    score: float | None
    compliant: bool
    failed_by_severity: dict[str, int]


class ReportDocument(BaseModel):
    """The stored report: what was evaluated, each control's result, the summary."""

    report_id: str
    framework: str
    framework_title: str
    framework_version: str
    subject: str
    generated_at: str
    engine: str
    summary: Summary
    results: list[ControlResult]


class EvidenceProblem(BaseModel):
    """Why evidence cannot be evaluated: ``path`` is inside the evidence object."""

    path: str
    message: str


@runtime_checkable
class ComplianceFacade(Protocol):
    """What the service needs from a compliance engine; plug one in with ``facade_class``."""

    def frameworks(self) -> list[FrameworkInfo]:
        """The frameworks this facade can evaluate."""
        ...

    def check_evidence(self, framework: str, evidence: dict[str, Any]) -> list[EvidenceProblem]:
        """Cheap shape checks run by the API before a report is accepted (empty: fine)."""
        ...

    def evaluate(
        self, *, report_id: str, framework: str, subject: str, evidence: dict[str, Any],
    ) -> ReportDocument:
        """Evaluate the framework's controls against the evidence (may be long)."""
        ...

    def health(self) -> dict[str, Any]:
        """``{"status": "up", ...}`` when the facade can work; raise when it cannot."""
        ...


def summarize(results: list[ControlResult]) -> Summary:
    """Counts and score of a list of results (pure)."""
    passed = [r for r in results if r.outcome is Outcome.PASS]
    failed = [r for r in results if r.outcome is Outcome.FAIL]
    applicable = _weight(passed) + _weight(failed)
    score = round(100 * _weight(passed) / applicable, 1) if applicable else None
    by_severity = {severity: 0 for severity in SEVERITY_WEIGHTS}
    for result in failed:
        by_severity[result.severity] += 1
    return Summary(total=len(results), passed=len(passed), failed=len(failed),
                   not_applicable=len(results) - len(passed) - len(failed), score=score,
                   compliant=bool(passed) and not failed, failed_by_severity=by_severity)


def _weight(results: list[ControlResult]) -> int:
    """Total severity weight of ``results``."""
    return sum(SEVERITY_WEIGHTS[r.severity] for r in results)


def now_iso() -> str:
    """The current UTC time as ISO 8601 with a Z."""
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def load_facade(settings: Settings) -> ComplianceFacade:
    """Instantiate ``settings.facade_class`` (``module:Class``); it receives the settings."""
    module_name, _, attr = settings.facade_class.partition(":")
    if not module_name or not attr:
        raise ValueError(f"facade_class {settings.facade_class!r} is not in module:Class form")
    factory = getattr(importlib.import_module(module_name), attr)
    facade = factory(settings)
    if not isinstance(facade, ComplianceFacade):
        raise TypeError(f"{settings.facade_class} does not implement ComplianceFacade")
    return facade
