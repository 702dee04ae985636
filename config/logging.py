"""Log redaction: anything that looks like a credential is masked before a record is written."""

import json
import logging
import re
from datetime import UTC, datetime

from core import observability

_PATTERNS = [
    # key=value or "key": "value" pairs whose key names a secret
    re.compile(
        r"(?i)((?:password|passwd|token|secret|api[_-]?key|authorization|auth_token)[\"']?\s*[:=]\s*[\"']?)"
        r"([^\s\"',&]+)"
    ),
    re.compile(r"(?i)(authorization=)([A-Za-z0-9+/=%]+)"),
    re.compile(r"(?i)(bearer\s+)([A-Za-z0-9._~+/=-]+)"),
    re.compile(r"(postgres(?:ql)?://[^:/\s]+:)([^@\s]+)(@)"),
]


def redact(text: str) -> str:
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + "***" + (m.group(3) if m.lastindex == 3 else ""), text)
    return text


class RedactSecretsFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


# Routine INFO lines of Celery, logged every few seconds by beat's sweeps and the worker running them.
_ROUTINE = ("Scheduler: Sending due task", "received", "succeeded in")


class RoutineTaskFilter(logging.Filter):
    """Logs Celery's routine per-task lines (beat sending a sweep, the worker receiving it and
    finishing it) at DEBUG instead of INFO: shown only when the root logger is at DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO:
            return True
        message = str(record.msg)
        if not any(marker in message for marker in _ROUTINE):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger().isEnabledFor(logging.DEBUG)


class ContextFilter(logging.Filter):
    """Stamps each record with the request id and the resource id of the work it belongs to."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = observability.request_id.get()
        record.resource_id = observability.resource_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line (LOG_FORMAT=json): time, level, logger, message, request_id and
    resource_id when known, and the exception redacted like the message."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("request_id", "resource_id"):
            value = getattr(record, key, "")
            if value:
                line[key] = value
        if record.exc_info:
            line["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(line, ensure_ascii=False)
