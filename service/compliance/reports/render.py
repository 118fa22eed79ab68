"""Report documents as JSON, CSV or HTML (pure functions of the document)."""

from __future__ import annotations

import csv
import io
from html import escape
from typing import Literal

from compliance.reports.facade import ReportDocument

Format = Literal["json", "csv", "html"]
MEDIA_TYPES: dict[str, str] = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "html": "text/html; charset=utf-8",
}
CSV_COLUMNS = ["control_id", "title", "severity", "outcome", "reason", "evidence_paths",
               "offenders", "remediation"]


def _csv_safe(value: str) -> str:
    # Spreadsheet apps run cells starting with these as formulas (CSV injection).
    return f"'{value}" if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def to_csv(document: ReportDocument) -> str:
    """One row per control."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in document.results:
        writer.writerow([_csv_safe(str(v)) for v in (
            r.id, r.title, r.severity, r.outcome.value, r.reason, ";".join(r.evidence_paths),
            ";".join(str(o) for o in r.offenders), r.remediation)])
    return out.getvalue()


def to_html(document: ReportDocument) -> str:
    """A self-contained page: summary, then one table row per control (all text escaped)."""
    s = document.summary
    rows = "\n".join(
        f"<tr class=\"{escape(r.outcome.value)}\"><td>{escape(r.id)}</td><td>{escape(r.title)}</td>"
        f"<td>{escape(r.severity)}</td><td>{escape(r.outcome.value)}</td><td>{escape(r.reason)}</td>"
        f"<td>{escape(', '.join(str(o) for o in r.offenders))}</td><td>{escape(r.remediation)}</td></tr>"
        for r in document.results
    )
    score = "n/a" if s.score is None else f"{s.score}%"
    title = escape(f"{document.framework_title}: {document.subject}")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif}}td,th{{border:1px solid #ccc;padding:4px}}
table{{border-collapse:collapse}}.fail{{background:#fdd}}.pass{{background:#dfd}}</style></head>
<body><h1>{title}</h1>
<p>Report {escape(document.report_id)}, framework {escape(document.framework)}
{escape(document.framework_version)}, generated {escape(document.generated_at)}.</p>
<p>Score {escape(score)}: {s.passed} passed, {s.failed} failed, {s.not_applicable} not applicable
of {s.total}.</p>
<table><thead><tr><th>Control</th><th>Title</th><th>Severity</th><th>Outcome</th><th>Reason</th>
<th>Offenders</th><th>Remediation</th></tr></thead>
<tbody>
{rows}
</tbody></table></body></html>
"""


def render(document: ReportDocument, fmt: Format) -> str:
    """The document in ``fmt``."""
    if fmt == "csv":
        return to_csv(document)
    if fmt == "html":
        return to_html(document)
    return document.model_dump_json(indent=2)
