"""JSON patch (RFC 6902), JSON merge patch (RFC 7386) and strategic merge patch."""

from __future__ import annotations

import copy
import json
from typing import Any

# list field name -> merge key (strategic merge patch)
MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "conditions": "type",
    "ownerReferences": "uid",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
    "resourceClaims": "name",
    "readinessGates": "conditionType",
    "containerStatuses": "name",
    "initContainerStatuses": "name",
}
# primitive lists that are merged as sets
SET_LISTS = {"finalizers"}


class PatchError(Exception):
    pass


# -- JSON patch ----------------------------------------------------------------
def _unescape(tok: str) -> str:
    return tok.replace("~1", "/").replace("~0", "~")


def _split(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"invalid JSON pointer {path!r}")
    return [_unescape(t) for t in path[1:].split("/")]


def _resolve(doc: Any, toks: list[str]) -> Any:
    cur = doc
    for t in toks:
        if isinstance(cur, dict):
            if t not in cur:
                raise PatchError(f"path not found: {t}")
            cur = cur[t]
        elif isinstance(cur, list):
            try:
                cur = cur[int(t)]
            except (ValueError, IndexError) as e:
                raise PatchError(f"invalid index {t}") from e
        else:
            raise PatchError(f"cannot traverse {t}")
    return cur


def _add(doc: Any, toks: list[str], value: Any) -> Any:
    if not toks:
        return value
    parent = _resolve(doc, toks[:-1])
    last = toks[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        else:
            try:
                i = int(last)
            except ValueError as e:
                raise PatchError(f"invalid index {last}") from e
            if i < 0 or i > len(parent):
                raise PatchError(f"index {i} out of range")
            parent.insert(i, value)
    else:
        raise PatchError("cannot add to a scalar")
    return doc


def _remove(doc: Any, toks: list[str]) -> tuple[Any, Any]:
    if not toks:
        raise PatchError("cannot remove the root")
    parent = _resolve(doc, toks[:-1])
    last = toks[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"unable to remove nonexistent key: {last}")
        return doc, parent.pop(last)
    if isinstance(parent, list):
        try:
            return doc, parent.pop(int(last))
        except (ValueError, IndexError) as e:
            raise PatchError(f"invalid index {last}") from e
    raise PatchError("cannot remove from a scalar")


def json_patch(doc: Any, ops: Any) -> Any:
    if not isinstance(ops, list):
        raise PatchError("json patch must be a list of operations")
    doc = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchError(f"invalid operation {op!r}")
        kind, toks = op["op"], _split(op["path"])
        if kind == "add":
            doc = _add(doc, toks, copy.deepcopy(op.get("value")))
        elif kind == "remove":
            doc, _ = _remove(doc, toks)
        elif kind == "replace":
            _resolve(doc, toks)
            if toks:
                doc, _ = _remove(doc, toks)
            doc = _add(doc, toks, copy.deepcopy(op.get("value")))
        elif kind in ("move", "copy"):
            src = _split(op.get("from", ""))
            if kind == "move":
                doc, val = _remove(doc, src)
            else:
                val = copy.deepcopy(_resolve(doc, src))
            doc = _add(doc, toks, val)
        elif kind == "test":
            if _resolve(doc, toks) != op.get("value"):
                raise PatchError(f"testing value {op['path']} failed")
        else:
            raise PatchError(f"unknown operation {kind!r}")
    return doc


# -- merge patch -----------------------------------------------------------------
def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


# -- strategic merge patch --------------------------------------------------------
def _merge_key(field: str, items: list[Any]) -> str | None:
    if field == "ports":
        sample = next((x for x in items if isinstance(x, dict)), None)
        if sample is None:
            return None
        return "containerPort" if "containerPort" in sample else "port"
    return MERGE_KEYS.get(field)


def _smp_list(field: str, orig: list[Any] | None, patch: list[Any], order: list[Any] | None) -> list[Any]:
    orig = list(orig or [])
    if any(isinstance(x, dict) and x.get("$patch") == "replace" for x in patch):
        return [x for x in patch if not (isinstance(x, dict) and x.get("$patch") == "replace")]
    if field in SET_LISTS or (patch and not isinstance(patch[0], dict) and field in SET_LISTS):
        out = list(orig)
        for x in patch:
            if x not in out:
                out.append(x)
        return out
    key = _merge_key(field, patch + orig)
    if key is None:
        return copy.deepcopy(patch)
    out = copy.deepcopy(orig)
    index = {x.get(key): i for i, x in enumerate(out) if isinstance(x, dict)}
    deleted = set()
    for item in patch:
        if not isinstance(item, dict):
            continue
        kv = item.get(key)
        if item.get("$patch") == "delete":
            deleted.add(kv)
            continue
        if kv in index:
            out[index[kv]] = strategic_merge(out[index[kv]], item)
        else:
            out.append(strategic_merge({}, item))
            index[kv] = len(out) - 1
    out = [x for x in out if not (isinstance(x, dict) and x.get(key) in deleted)]
    if order:
        pos = {(o.get(key) if isinstance(o, dict) else o): i for i, o in enumerate(order)}
        out.sort(key=lambda x: pos.get(x.get(key) if isinstance(x, dict) else x, len(pos)))
    return out


def strategic_merge(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if patch.get("$patch") == "delete":
        return None
    out = dict(target) if isinstance(target, dict) else {}
    retain = patch.get("$retainKeys")
    for k, v in patch.items():
        if k in ("$patch", "$retainKeys") or k.startswith("$setElementOrder/"):
            continue
        if k.startswith("$deleteFromPrimitiveList/"):
            f = k.split("/", 1)[1]
            out[f] = [x for x in out.get(f) or [] if x not in (v or [])]
            continue
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict):
            merged = strategic_merge(out.get(k), v)
            if merged is None:
                out.pop(k, None)
            else:
                out[k] = merged
        elif isinstance(v, list):
            order = patch.get(f"$setElementOrder/{k}")
            out[k] = _smp_list(k, out.get(k) if isinstance(out.get(k), list) else None, v, order)
        else:
            out[k] = v
    for k, v in patch.items():
        if k.startswith("$setElementOrder/"):
            f = k.split("/", 1)[1]
            if f not in patch and isinstance(out.get(f), list):
                out[f] = _smp_list(f, out[f], [], v)
    if isinstance(retain, list):
        out = {k: v for k, v in out.items() if k in retain}
    return out


JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


def apply_patch(content_type: str, doc: dict[str, Any], raw: bytes) -> Any:
    try:
        patch = json.loads(raw or b"null")
    except ValueError as e:
        raise PatchError(f"invalid JSON in patch body: {e}") from e
    if content_type == JSON_PATCH:
        return json_patch(doc, patch)
    if content_type == MERGE_PATCH:
        return merge_patch(doc, patch)
    if content_type == STRATEGIC_PATCH:
        return strategic_merge(doc, patch)
    raise PatchError(f"unsupported patch type {content_type}")
