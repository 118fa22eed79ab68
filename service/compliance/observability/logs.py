"""JSON logs on stdout, with the correlation id on every line (API and workers)."""

from __future__ import annotations

import logging
import re
import sys
from urllib.parse import parse_qsl, urlencode

from asgi_correlation_id import CorrelationIdFilter
from pythonjsonlogger.json import JsonFormatter


def configure_logging(level: str = "INFO", *, service: str = "compliance") -> None:
    """Route every logger, uvicorn's and celery's included, through one JSON handler."""
    handler = logging.StreamHandler(sys.stdout)
    handler.addFilter(CorrelationIdFilter(uuid_length=36, default_value="-"))
    handler.addFilter(redact_access_log)
    handler.setFormatter(
        JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(correlation_id)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            static_fields={"service": service},
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every request at INFO (with the receiver URL); our own lines say what matters.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "celery", "celery.app.trace"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True


# Query parameter names that carry credentials: their values never reach a log line.
CREDENTIAL_NAME = re.compile(
    r"key|token|secret|passw|pwd|auth|bearer|signature|sig$|credential|session|cookie", re.I)
REDACTED = "[redacted]"
_REFUSED = {401, 403}


def redact_query(path: str, *, refused: bool) -> str:
    """``path`` with credential-named query values redacted, or every query value when the
    request was refused for its credentials (a key may be sent under any name)."""
    base, sep, query = path.partition("?")
    if not sep:
        return path
    pairs = parse_qsl(query, keep_blank_values=True)
    if not pairs and query:
        return f"{base}?{REDACTED}"
    cleaned = [(name, REDACTED if refused or CREDENTIAL_NAME.search(name) else value)
               for name, value in pairs]
    return f"{base}?{urlencode(cleaned, safe='[]')}"


def redact_access_log(record: logging.LogRecord) -> bool:
    """uvicorn's access line is ``client - "METHOD path HTTP/v" status``: keys sent in the
    query string (refused, but sent) are not written to the log."""
    if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
        client, method, path, version, status = record.args
        refused = status in _REFUSED
        record.args = (client, method, redact_query(str(path), refused=refused), version, status)
    return True
