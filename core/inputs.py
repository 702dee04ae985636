"""Guards for input from outside the schema: text PostgreSQL and UTF-8 cannot hold, nesting deep enough
to exhaust the stack, and bodies larger than the server accepts. Each refusal is a ServiceError, so
every surface (API, dashboard, admin) turns it into its usual 400/413 with a code and a message."""

import json
import re
from typing import Any

from django.conf import settings

from core.errors import ServiceError, ValidationFailed
from core.text import text_problem

# JSON request bodies: our deepest input is an object in a list in an object (PUT .../env).
JSON_MAX_DEPTH = 32


class RequestTooLarge(ServiceError):
    status_code = 413
    code = "request_too_large"


class TooDeep(ValidationFailed):
    code = "too_deeply_nested"


def check_text(value: str, where: str, *, code: str = "invalid_characters") -> str:
    problem = text_problem(value)
    if problem:
        raise ValidationFailed(f"{where} {problem}.", code=code, details={"field": where})
    return value


def fullmatch(pattern: re.Pattern[str], value: Any) -> bool:
    """A regex check of user input: the whole string, never `$` (which also matches before a final
    newline)."""
    return isinstance(value, str) and pattern.fullmatch(value) is not None


def check_json_value(data: Any, max_depth: int = JSON_MAX_DEPTH) -> Any:
    """Walk parsed JSON without recursion: refuse nesting deeper than max_depth and strings (keys and
    values) that contain NUL or lone surrogates."""
    stack: list[tuple[Any, int, str]] = [(data, 1, "")]
    while stack:
        value, depth, path = stack.pop()
        if isinstance(value, dict | list):
            if depth > max_depth:
                raise TooDeep(
                    f"The JSON body is nested more than {max_depth} levels deep.",
                    details={"max_depth": max_depth},
                )
            if isinstance(value, dict):
                for key, item in value.items():
                    check_text(key, f"{path or 'body'}: a key")
                    stack.append((item, depth + 1, f"{path}.{key}" if path else key))
            else:
                stack.extend((item, depth + 1, f"{path}[{i}]") for i, item in enumerate(value))
        elif isinstance(value, str):
            check_text(value, path or "body")
    return data


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def load_json_body(body: bytes, encoding: str = "utf-8") -> Any:
    """Parse a request body: bounded in size, depth and characters. Raises ServiceError."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if limit is not None and len(body) > limit:
        raise RequestTooLarge(f"The request body is larger than {limit} bytes.", details={"max_bytes": limit})
    try:
        text = body.decode(encoding)
        data = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise TooDeep(
            f"The JSON body is nested more than {JSON_MAX_DEPTH} levels deep.",
            details={"max_depth": JSON_MAX_DEPTH},
        ) from None
    except (ValueError, LookupError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise ValidationFailed(f"JSON parse error - {exc}", code="malformed_json") from None
    return check_json_value(data)
