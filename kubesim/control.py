"""Tokens and permissions, fault injection and request statistics."""

from __future__ import annotations

import random
import threading
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any


@dataclass
class TokenInfo:
    user: str
    allow_all: bool = True
    deny: list[dict[str, str]] = field(default_factory=list)
    allow: list[dict[str, str]] = field(default_factory=list)
    admin: bool = False


def _rule_matches(rule: dict[str, str], verb: str, group: str, resource: str, ns: str, name: str) -> bool:
    def ok(k: str, v: str) -> bool:
        want = rule.get(k)
        return want is None or want in ("*", v)

    res = rule.get("resource")
    if res not in (None, "*", resource) and not (res.endswith("/*") and resource.startswith(res[:-1])):
        return False
    return ok("verb", verb) and ok("group", group) and ok("namespace", ns) and ok("name", name)


class Auth:
    def __init__(self, admin_token: str) -> None:
        self.lock = threading.Lock()
        self.admin_token = admin_token
        self.tokens: dict[str, TokenInfo] = {admin_token: TokenInfo("kubesim-admin", admin=True)}

    def lookup(self, token: str | None) -> TokenInfo | None:
        if not token:
            return None
        return self.tokens.get(token)

    def add(self, spec: dict[str, Any]) -> TokenInfo:
        token = str(spec["token"])
        info = TokenInfo(
            user=str(spec.get("user") or f"user-{token[:6]}"),
            allow_all=bool(spec.get("allow_all", True)),
            deny=list(spec.get("deny") or []),
            allow=list(spec.get("allow") or []),
        )
        with self.lock:
            self.tokens[token] = info
        return info

    def allowed(self, info: TokenInfo, verb: str, group: str, resource: str, ns: str, name: str = "") -> bool:
        if info.admin:
            return True
        if any(_rule_matches(r, verb, group, resource, ns, name) for r in info.deny):
            return False
        if info.allow_all:
            return True
        return any(_rule_matches(r, verb, group, resource, ns, name) for r in info.allow)


@dataclass
class Fault:
    rate: float = 1.0
    status: int | None = None
    latency_ms: float = 0
    drop: bool = False
    verbs: list[str] | None = None
    resources: list[str] | None = None
    retry_after: int = 1
    count: int | None = None  # apply to at most this many matching requests
    message: str = "kubesim injected fault"


class Faults:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.fault: Fault | None = None
        self.rng = random.Random()

    def set(self, spec: dict[str, Any]) -> Fault:
        known = set(Fault.__dataclass_fields__)
        unknown = set(spec) - known
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        f = Fault(**spec)
        with self.lock:
            self.fault = f
        return f

    def clear(self) -> None:
        with self.lock:
            self.fault = None

    def pick(self, verb: str, resource: str) -> Fault | None:
        with self.lock:
            f = self.fault
            if f is None:
                return None
            if f.verbs and verb not in f.verbs:
                return None
            if f.resources and resource not in f.resources and resource.split("/")[0] not in f.resources:
                return None
            if f.rate < 1.0 and self.rng.random() >= f.rate:
                return None
            if f.count is not None:
                if f.count <= 0:
                    return None
                f.count -= 1
            return f

    def describe(self) -> dict[str, Any] | None:
        with self.lock:
            return None if self.fault is None else dict(self.fault.__dict__)


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.total = 0
            self.by_verb: Counter[str] = Counter()
            self.by_resource: Counter[str] = Counter()
            self.by_verb_resource: Counter[str] = Counter()
            self.by_object: Counter[str] = Counter()
            # creates that succeeded (2xx), by object: a create answered 409 AlreadyExists is not here
            self.created_by_object: Counter[str] = Counter()
            self.by_code: Counter[str] = Counter()
            self.latencies: deque[float] = deque(maxlen=20000)
            self.connections = 0

    def connection(self) -> None:
        with self.lock:
            self.connections += 1

    def observe(self, seconds: float) -> None:
        self.latencies.append(seconds)

    def count(self, verb: str, resource: str, ns: str, name: str) -> None:
        with self.lock:
            self.total += 1
            self.by_verb[verb] += 1
            if resource:
                self.by_resource[resource] += 1
                self.by_verb_resource[f"{verb} {resource}"] += 1
                if name:
                    obj = f"{ns}/{name}" if ns else name
                    self.by_object[f"{verb} {resource} {obj}"] += 1

    def created(self, resource: str, ns: str, name: str) -> None:
        with self.lock:
            self.created_by_object[f"create {resource} {f'{ns}/{name}' if ns else name}"] += 1

    def code(self, code: int) -> None:
        with self.lock:
            self.by_code[str(code)] += 1

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            lat = sorted(self.latencies)

            def pct(p: float) -> float | None:
                return round(lat[min(len(lat) - 1, int(p * len(lat)))] * 1000, 4) if lat else None

            return {
                "server_ms": {"count": len(lat), "p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99)},
                "total": self.total,
                "by_verb": dict(self.by_verb),
                "by_resource": dict(self.by_resource),
                "by_verb_resource": dict(self.by_verb_resource),
                "by_object": dict(self.by_object),
                "created_by_object": dict(self.created_by_object),
                "by_code": dict(self.by_code),
                "connections": self.connections,
            }
