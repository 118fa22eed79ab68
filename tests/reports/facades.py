"""Facades a test plugs in through ``COMPLIANCE_FACADE_CLASS``."""

from __future__ import annotations

import time
from typing import Any

from compliance.reports.engine import BuiltinFacade
from compliance.reports.facade import ReportDocument


class SlowFacade(BuiltinFacade):
    """Takes a minute per report: long enough to hit any test's soft time limit."""

    def evaluate(self, *, report_id: str, framework: str, subject: str,
                 evidence: dict[str, Any]) -> ReportDocument:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(0.05)
        return super().evaluate(report_id=report_id, framework=framework, subject=subject,
                                evidence=evidence)


class ExplodingFacade(BuiltinFacade):
    """A facade with a bug."""

    def evaluate(self, *, report_id: str, framework: str, subject: str,
                 evidence: dict[str, Any]) -> ReportDocument:
        raise RuntimeError("engine bug")


class NotAFacade:
    """Has none of the facade's methods."""

    def __init__(self, settings: object) -> None:
        self.settings = settings
