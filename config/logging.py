"""Log redaction: anything that looks like a credential is masked before a record is written."""

import logging
import re

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
