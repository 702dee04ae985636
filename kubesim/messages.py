"""Request/response types shared by the transport and the API layer."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from kubesim.errors import bad_request


def now_ts() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def clone(obj: Any) -> Any:
    return json.loads(json.dumps(obj))


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case keys
    body: bytes = b""
    raw_query: str = ""  # as sent (repeated keys, e.g. exec's `command`, are only here)

    @property
    def token(self) -> str | None:
        auth = self.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip()
        return None


@dataclass
class Response:
    code: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    stream: Iterator[bytes] | None = None
    drop: bool = False
    # a WebSocket upgrade (pods/exec): called with the connection and the negotiated protocol
    upgrade: Callable[[Any, str], None] | None = None


def decode_body(req: Request) -> Any:
    """JSON (or YAML, by content type) request body."""
    try:
        if "yaml" in req.headers.get("content-type", ""):
            return yaml.safe_load(req.body)
        return json.loads(req.body or b"null")
    except (ValueError, yaml.YAMLError) as e:
        raise bad_request(f"the body of the request could not be decoded: {e}") from e
