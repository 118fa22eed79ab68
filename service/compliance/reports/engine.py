"""The built-in facade: YAML control packs whose checks are JMESPath expressions (no eval).

A control is ``not_applicable`` when its ``applies_if`` finds nothing (null, false, empty),
``pass`` when its ``check`` is exactly ``true``, and ``fail`` otherwise: missing or garbled
evidence never passes a control.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Any

import jmespath
import yaml
from jmespath.exceptions import JMESPathError
from jmespath.parser import ParsedResult
from pydantic import BaseModel, Field, PrivateAttr, ValidationError, field_validator, model_validator

from compliance.reports.facade import (
    ControlInfo,
    ControlResult,
    EvidenceProblem,
    FrameworkInfo,
    Outcome,
    ReportDocument,
    Severity,
    now_iso,
    summarize,
)
from compliance.settings import Settings

PACKAGE = "compliance.reports"
PACK_DIR = "packs"
ENGINE_NAME = "builtin-jmespath/1"
JSON_TYPES: dict[str, type | tuple[type, ...]] = {
    "object": dict, "array": list, "string": str, "number": (int, float), "boolean": bool,
}
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MAX_OFFENDERS = 50


class PackError(ValueError):
    """A control pack does not load or validate."""


def _compile(expression: str) -> ParsedResult:
    try:
        return jmespath.compile(expression)
    except JMESPathError as exc:
        raise ValueError(f"invalid JMESPath {expression!r}: {exc}") from exc


def _fields(node: dict[str, Any]) -> set[str]:
    """Every field name an expression's AST reads."""
    names = {node["value"]} if node.get("type") == "field" else set()
    for child in node.get("children", []):
        if isinstance(child, dict):
            names |= _fields(child)
    return names


class Control(BaseModel):
    """One control of a pack, with its expressions compiled."""

    model_config = {"extra": "forbid"}

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")
    title: str = Field(min_length=3, max_length=200)
    severity: Severity
    check: str = Field(min_length=1)
    applies_if: str | None = None
    offenders: str | None = None
    evidence_paths: list[str] = Field(min_length=1)
    remediation: str = Field(min_length=10)
    _compiled: dict[str, ParsedResult] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _compile_all(self) -> Control:
        declared = {name for path in self.evidence_paths for name in _IDENT.findall(path)}
        for name in ("check", "applies_if", "offenders"):
            expression = getattr(self, name)
            if expression is None:
                continue
            compiled = _compile(expression)
            undeclared = _fields(compiled.parsed) - declared
            if undeclared:
                raise ValueError(f"{name} reads {sorted(undeclared)} not listed in evidence_paths")
            self._compiled[name] = compiled
        return self

    def search(self, name: str, evidence: dict[str, Any]) -> Any:
        """Run one of the control's expressions."""
        return self._compiled[name].search(evidence)


class Pack(BaseModel):
    """A framework: metadata, the evidence sections it reads, and its controls."""

    model_config = {"extra": "forbid"}

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,63}$")
    title: str
    version: str
    description: str = ""
    evidence: dict[str, str] = Field(min_length=1)
    controls: list[Control] = Field(min_length=1)

    @field_validator("evidence")
    @classmethod
    def _types(cls, sections: dict[str, str]) -> dict[str, str]:
        for name, kind in sections.items():
            if kind not in JSON_TYPES:
                raise ValueError(f"section {name}: type must be one of {sorted(JSON_TYPES)}")
        return sections

    @model_validator(mode="after")
    def _consistent(self) -> Pack:
        ids = [c.id for c in self.controls]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"duplicate control ids: {duplicates}")
        for control in self.controls:
            roots = {_IDENT.findall(path)[0] for path in control.evidence_paths}
            unknown = roots - set(self.evidence)
            if unknown:
                raise ValueError(f"{control.id}: evidence paths under undeclared sections {sorted(unknown)}")
        return self

    def info(self) -> FrameworkInfo:
        """The pack as listed by ``GET /frameworks``."""
        return FrameworkInfo(
            id=self.id, title=self.title, version=self.version, description=self.description,
            evidence_sections=self.evidence,
            controls=[ControlInfo(id=c.id, title=c.title, severity=c.severity) for c in self.controls],
        )


def parse_pack(text: str, *, source: str) -> Pack:
    """Parse and validate one pack's YAML; PackError says which file and why."""
    try:
        data = yaml.safe_load(text)
        return Pack.model_validate(data)
    except (yaml.YAMLError, ValidationError) as exc:
        raise PackError(f"{source}: {exc}") from exc


def load_packs() -> dict[str, Pack]:
    """Every pack shipped in the package, by framework id."""
    packs: dict[str, Pack] = {}
    folder = resources.files(PACKAGE).joinpath(PACK_DIR)
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".yaml"):
            continue
        pack = parse_pack(entry.read_text(encoding="utf-8"), source=entry.name)
        if pack.id in packs:
            raise PackError(f"{entry.name}: framework id {pack.id!r} is defined twice")
        packs[pack.id] = pack
    if not packs:
        raise PackError(f"no control packs found in {PACKAGE}/{PACK_DIR}")
    return packs


def _empty(value: Any) -> bool:
    return value is None or value is False or value in ([], {}, "")


def _result(control: Control, outcome: Outcome, reason: str, offenders: list[Any] | None = None,
            ) -> ControlResult:
    return ControlResult(id=control.id, title=control.title, severity=control.severity,
                         outcome=outcome, reason=reason, evidence_paths=control.evidence_paths,
                         offenders=offenders or [], remediation=control.remediation)


def evaluate_control(control: Control, evidence: dict[str, Any]) -> ControlResult:
    """Evaluate one control (pure)."""
    try:
        if control.applies_if is not None and _empty(control.search("applies_if", evidence)):
            return _result(control, Outcome.NOT_APPLICABLE, f"no evidence matched {control.applies_if}")
        verdict = control.search("check", evidence)
        if verdict is True:
            return _result(control, Outcome.PASS, "check passed")
        offenders: list[Any] = []
        if control.offenders is not None:
            found = control.search("offenders", evidence)
            offenders = (found if isinstance(found, list) else [found])[:_MAX_OFFENDERS]
        reason = "check failed" if verdict is False else "evidence missing for the check"
        if offenders:
            reason += f": {len(offenders)} offending item(s)"
        return _result(control, Outcome.FAIL, reason, offenders)
    except JMESPathError as exc:
        return _result(control, Outcome.FAIL, f"evidence has an unexpected shape: {exc}")


def evidence_problems(pack: Pack, evidence: dict[str, Any]) -> list[EvidenceProblem]:
    """Top-level shape problems that make the evidence unusable for ``pack`` (pure)."""
    present = [name for name in pack.evidence if name in evidence]
    if not present:
        return [EvidenceProblem(path="", message=(
            f"none of the sections {pack.id} reads is present: {', '.join(pack.evidence)}"))]
    problems = []
    for name in present:
        kind = pack.evidence[name]
        value = evidence[name]
        if (isinstance(value, bool) and kind == "number") or not isinstance(value, JSON_TYPES[kind]):
            problems.append(EvidenceProblem(path=name, message=f"must be a JSON {kind}"))
    return problems


class BuiltinFacade:
    """Evaluates the shipped control packs; packs load (and validate) at construction."""

    def __init__(self, settings: Settings | None = None) -> None:
        self._packs = load_packs()

    def frameworks(self) -> list[FrameworkInfo]:
        """The shipped packs."""
        return [pack.info() for pack in self._packs.values()]

    def check_evidence(self, framework: str, evidence: dict[str, Any]) -> list[EvidenceProblem]:
        """Top-level shape checks for the API."""
        return evidence_problems(self._packs[framework], evidence)

    def evaluate(
        self, *, report_id: str, framework: str, subject: str, evidence: dict[str, Any],
    ) -> ReportDocument:
        """Evaluate every control of the framework."""
        pack = self._packs[framework]
        results = [evaluate_control(control, evidence) for control in pack.controls]
        return ReportDocument(
            report_id=report_id, framework=pack.id, framework_title=pack.title,
            framework_version=pack.version, subject=subject, generated_at=now_iso(),
            engine=ENGINE_NAME, summary=summarize(results), results=results,
        )

    def health(self) -> dict[str, Any]:
        """Up when the packs load and validate again (catches a broken install)."""
        packs = load_packs()
        return {"status": "up", "frameworks": sorted(packs),
                "controls": sum(len(p.controls) for p in packs.values())}
