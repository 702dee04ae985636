"""Label and field selectors: parse the apiserver string syntax into predicates on objects."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from kubesim.errors import bad_request

Pred = Callable[[dict[str, Any]], bool]


def _split_top(s: str) -> list[str]:
    out: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in s:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if cur:
        out.append("".join(cur).strip())
    return [x for x in out if x]


_SET_RE = re.compile(r"^([^\s!=()]+)\s+(in|notin)\s+\((.*)\)$")


def _label_req(req: str) -> Callable[[dict[str, str]], bool]:
    m = _SET_RE.match(req)
    if m:
        key, op, vals = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",") if v.strip()}
        if op == "in":
            return lambda labels: labels.get(key) in vals
        return lambda labels: labels.get(key) not in vals
    for op in ("!=", "==", "="):
        if op in req:
            key, _, val = req.partition(op)
            key, val = key.strip(), val.strip()
            if not key:
                break
            if op == "!=":
                return lambda labels: labels.get(key) != val
            return lambda labels: labels.get(key) == val
    if req.startswith("!"):
        key = req[1:].strip()
        if key:
            return lambda labels: key not in labels
    elif req and re.match(r"^[A-Za-z0-9_./-]+$", req):
        return lambda labels: req in labels
    raise bad_request(f"unable to parse requirement: {req!r}")


def label_selector(s: str | None) -> Pred | None:
    if not s:
        return None
    reqs = [_label_req(r) for r in _split_top(s)]

    def pred(obj: dict[str, Any]) -> bool:
        labels = obj.get("metadata", {}).get("labels") or {}
        return all(r(labels) for r in reqs)

    return pred


def _field_value(obj: dict[str, Any], path: str) -> str:
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(part)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def field_selector(s: str | None) -> Pred | None:
    if not s:
        return None
    reqs: list[tuple[str, bool, str]] = []
    for r in _split_top(s):
        for op in ("!=", "==", "="):
            if op in r:
                k, _, v = r.partition(op)
                reqs.append((k.strip(), op != "!=", v.strip()))
                break
        else:
            raise bad_request(f"invalid field selector: {r!r}")

    def pred(obj: dict[str, Any]) -> bool:
        return all((_field_value(obj, k) == v) == eq for k, eq, v in reqs)

    return pred


def combine(*preds: Pred | None) -> Pred | None:
    ps = [p for p in preds if p is not None]
    if not ps:
        return None
    if len(ps) == 1:
        return ps[0]
    return lambda o: all(p(o) for p in ps)
