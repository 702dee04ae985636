"""Validation of writes: kubernetes-validate (strict) for built-ins, CRD openAPIV3Schema for CRs."""

from __future__ import annotations

import json
import logging
import re
import threading
from pathlib import Path
from typing import Any

import jsonschema
from jsonschema.exceptions import best_match
from referencing import Registry, Resource

from kubesim.errors import ApiError, invalid
from kubesim.resources import ResourceType

log = logging.getLogger("kubesim")

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")

LABEL_NAME_KINDS = {"namespaces", "services"}
SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
    "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
    "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
    "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
STS_MUTABLE = {
    "replicas",
    "ordinals",
    "template",
    "updateStrategy",
    "persistentVolumeClaimRetentionPolicy",
    "minReadySeconds",
    "revisionHistoryLimit",
}


def _schema_root() -> Path:
    import kubernetes_validate

    return Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"


class BuiltinValidators:
    """Loads the kubernetes-validate strict definitions once; compiles one validator per kind."""

    def __init__(self, k8s_version: str = "1.33") -> None:
        self.k8s_version = k8s_version.lstrip("v")
        self.dir = self._pick_dir()
        self.lock = threading.Lock()
        self.cache: dict[tuple[str, str], Any] = {}
        self.registry: Registry | None = None
        if self.dir is not None:
            defs = json.loads((self.dir / "_definitions.json").read_text())
            self.registry = Resource.from_contents(defs) @ Registry()

    def _pick_dir(self) -> Path | None:
        root = _schema_root()
        mm = tuple(int(x) for x in self.k8s_version.split(".")[:2])
        best: tuple[tuple[int, int], Path] | None = None
        for d in root.iterdir():
            m = re.match(r"^v(\d+)\.(\d+)\.\d+-local-strict$", d.name)
            if not m:
                continue
            v = (int(m.group(1)), int(m.group(2)))
            if v <= mm and (best is None or v > best[0]):
                best = (v, d)
        if best is None:
            log.warning(
                "kubesim: no kubernetes-validate schemas for %s; built-in validation off", self.k8s_version
            )
            return None
        return best[1]

    def validator(self, api_version: str, kind: str) -> Any:
        k = (api_version, kind)
        v = self.cache.get(k)
        if v is not None or self.dir is None:
            return v
        with self.lock:
            if k in self.cache:
                return self.cache[k]
            av = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
            f = self.dir / f"{kind.lower()}-{av}.json"
            val = None
            if f.exists():
                schema = json.loads(f.read_text())
                val = jsonschema.Draft202012Validator(schema, registry=self.registry)
            self.cache[k] = val
            return val

    def warm(self, pairs: list[tuple[str, str]]) -> None:
        for av, kind in pairs:
            self.validator(av, kind)


def crd_schema_to_jsonschema(schema: dict[str, Any], strict: bool = True) -> dict[str, Any]:
    """Turn a structural openAPIV3Schema into a JSON schema usable by jsonschema."""

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(x) for x in node]
        if not isinstance(node, dict):
            return node
        out: dict[str, Any] = {}
        for k, v in node.items():
            if k in ("properties", "patternProperties", "definitions"):
                out[k] = {pk: walk(pv) for pk, pv in v.items()}
            elif k in ("items", "additionalProperties", "not") and isinstance(v, dict | list):
                out[k] = walk(v)
            elif k in ("allOf", "anyOf", "oneOf"):
                out[k] = [walk(x) for x in v]
            elif k in ("x-kubernetes-validations", "description", "example"):
                continue
            else:
                out[k] = v
        if out.pop("x-kubernetes-int-or-string", False):
            out.pop("type", None)
            out["type"] = ["integer", "string"]
        if out.pop("nullable", False) and isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        if (
            strict
            and "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
            and not out.get("x-kubernetes-embedded-resource")
        ):
            out["additionalProperties"] = False
        return out

    js = walk(schema)
    props = js.setdefault("properties", {})
    props.setdefault("apiVersion", {"type": "string"})
    props.setdefault("kind", {"type": "string"})
    props["metadata"] = {"type": "object"}
    return js


def compile_crd_validator(schema: dict[str, Any] | None) -> Any:
    if not schema:
        return None
    return jsonschema.Draft202012Validator(crd_schema_to_jsonschema(schema))


def _path(err: jsonschema.ValidationError) -> str:
    parts = []
    for p in err.absolute_path:
        if isinstance(p, int):
            parts.append(f"[{p}]")
        else:
            parts.append(("." if parts else "") + str(p))
    return "".join(parts)


def _message(err: jsonschema.ValidationError) -> str:
    if err.validator == "additionalProperties":
        extra = re.findall(r"'([^']+)' was unexpected", err.message)
        if extra:
            return f'unknown field "{extra[0]}"' if len(extra) == 1 else f"unknown fields {extra}"
    if err.validator == "enum":
        return f"Unsupported value: {json.dumps(err.instance)}: supported values: " + ", ".join(
            json.dumps(x) for x in err.validator_value
        )
    if err.validator == "required":
        return f"Required value: {err.message}"
    return f"Invalid value: {json.dumps(err.instance)[:200]}: {err.message[:300]}"


def schema_errors(validator: Any, obj: dict[str, Any], limit: int = 5) -> list[tuple[str, str]]:
    if validator is None or validator.is_valid(obj):
        return []
    errs = sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
    out: list[tuple[str, str]] = []
    seen = set()
    for e in errs:
        e = best_match([e]) if e.context else e
        item = (_path(e), _message(e))
        if item not in seen:
            seen.add(item)
            out.append(item)
        if len(out) >= limit:
            break
    return out


def name_errors(rt: ResourceType, name: str) -> list[tuple[str, str]]:
    if rt.plural in LABEL_NAME_KINDS:
        if len(name) > 63:
            return [("metadata.name", f'Invalid value: "{name}": must be no more than 63 characters')]
        if not DNS1123_LABEL.match(name):
            return [("metadata.name", f'Invalid value: "{name}": {LABEL_MSG}')]
        return []
    if rt.plural == "events":
        return []
    if len(name) > 253:
        return [("metadata.name", f'Invalid value: "{name}": must be no more than 253 characters')]
    if not DNS1123_SUBDOMAIN.match(name):
        return [("metadata.name", f'Invalid value: "{name}": {SUBDOMAIN_MSG}')]
    return []


def label_errors(md: dict[str, Any], fld: str = "metadata.labels") -> list[tuple[str, str]]:
    out = []
    labels = md.get("labels") or {}
    if not isinstance(labels, dict):
        return [(fld, "Invalid value: must be a map")]
    for k, v in labels.items():
        _, _, name = str(k).rpartition("/")
        if not name or len(name) > 63 or not QUALIFIED_NAME.match(name):
            out.append(
                (
                    fld,
                    f'Invalid value: "{k}": name part must consist of alphanumeric characters, '
                    "'-', '_' or '.', and must start and end with an alphanumeric character",
                )
            )
        if not isinstance(v, str) or len(v) > 63 or not LABEL_VALUE.match(v):
            out.append(
                (
                    fld,
                    f'Invalid value: "{v}": a valid label must be an empty string or consist of '
                    "alphanumeric characters, '-', '_' or '.', and must start and end with an "
                    "alphanumeric character",
                )
            )
    return out


def selector_matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def deployment_errors(obj: dict[str, Any]) -> list[tuple[str, str]]:
    """A Deployment's selector is required and must match its pod template."""
    spec = obj.get("spec") or {}
    selector: dict[str, Any] = spec.get("selector") or {}
    if not (selector.get("matchLabels") or selector.get("matchExpressions")):
        return [("spec.selector", "Required value")]
    tlabels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    if not selector_matches(selector, tlabels):
        return [
            (
                "spec.template.metadata.labels",
                f"Invalid value: {json.dumps(tlabels)}: `selector` does not match template `labels`",
            )
        ]
    return []


def statefulset_errors(obj: dict[str, Any], old: dict[str, Any] | None) -> list[tuple[str, str]]:
    spec = obj.get("spec") or {}
    out: list[tuple[str, str]] = []
    selector = spec.get("selector")
    tlabels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    if not selector or not (selector.get("matchLabels") or selector.get("matchExpressions")):
        out.append(("spec.selector", "Required value"))
    elif not selector_matches(selector, tlabels):
        out.append(
            (
                "spec.template.metadata.labels",
                f"Invalid value: {json.dumps(tlabels)}: `selector` does not match template `labels`",
            )
        )
    if old is not None:
        ospec = old.get("spec") or {}
        a = {k: v for k, v in spec.items() if k not in STS_MUTABLE}
        b = {k: v for k, v in ospec.items() if k not in STS_MUTABLE}
        if a != b:
            out.append(
                (
                    "spec",
                    "Forbidden: updates to statefulset spec for fields other than 'replicas', "
                    "'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' "
                    "and 'minReadySeconds' are forbidden",
                )
            )
    return out


_QUANTITY = re.compile(r"([0-9]+(?:\.[0-9]+)?)([EPTGMK]i|[EPTGMkmu]|e[0-9]+)?")
_SUFFIX = {
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
    "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18, "m": 10**-3, "u": 10**-6,
}  # fmt: skip


def quantity(value: Any) -> float | None:
    """A Kubernetes quantity as a number ("10Gi" -> 10737418240), or None when it is not one."""
    match = _QUANTITY.fullmatch(str(value).strip())
    if not match:
        return None
    number, suffix = float(match.group(1)), match.group(2) or ""
    if suffix.startswith("e"):
        return number * 10 ** int(suffix[1:])
    return number * _SUFFIX.get(suffix, 1)


def _storage_request(spec: dict[str, Any]) -> Any:
    return ((spec.get("resources") or {}).get("requests") or {}).get("storage")


def pvc_errors(obj: dict[str, Any], old: dict[str, Any] | None) -> list[tuple[str, str]]:
    """Updates of a claim as the API server checks them: only resources.requests may change, and only
    on a bound claim; the storage request can grow but never shrink. Simplified: every storage class is
    taken to allow volume expansion (the StorageClass's allowVolumeExpansion is not looked at)."""
    if old is None:
        return []
    spec, ospec = obj.get("spec") or {}, old.get("spec") or {}

    def without_requests(s: dict[str, Any]) -> dict[str, Any]:
        resources = {k: v for k, v in (s.get("resources") or {}).items() if k != "requests"}
        rest = {k: v for k, v in s.items() if k not in ("resources", "volumeAttributesClassName")}
        return {**rest, "resources": resources} if resources else rest

    bound = (old.get("status") or {}).get("phase") == "Bound"
    if without_requests(spec) != without_requests(ospec) or (
        not bound and spec.get("resources") != ospec.get("resources")
    ):
        return [
            (
                "spec",
                "Forbidden: spec is immutable after creation except resources.requests and "
                "volumeAttributesClassName for bound claims",
            )
        ]
    new_size, old_size = quantity(_storage_request(spec)), quantity(_storage_request(ospec))
    if new_size is not None and old_size is not None and new_size < old_size:
        return [("spec.resources.requests.storage", "Forbidden: field can not be less than previous value")]
    return []


def validate_object(
    builtins: BuiltinValidators, rt: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None
) -> None:
    """Raise ApiError(422) if obj is invalid."""
    md = obj.get("metadata") or {}
    name = md.get("name") or ""
    causes = name_errors(rt, name) + label_errors(md)
    if rt.custom:
        causes += schema_errors(rt.validator, obj)
    else:
        causes += schema_errors(builtins.validator(rt.api_version, rt.kind), obj)
        if rt.plural == "statefulsets":
            causes += statefulset_errors(obj, old)
        elif rt.plural == "deployments":
            causes += deployment_errors(obj)
        elif rt.plural == "persistentvolumeclaims":
            causes += pvc_errors(obj, old)
    if causes:
        raise invalid(rt.group, rt.kind, name, causes)


def check_immutable(rt: ResourceType, obj: dict[str, Any], old: dict[str, Any]) -> None:
    if rt.plural in ("secrets", "configmaps") and old.get("immutable"):
        for f in ("data", "binaryData", "stringData"):
            if obj.get(f) != old.get(f):
                raise invalid(
                    rt.group,
                    rt.kind,
                    obj["metadata"]["name"],
                    [("data", "Forbidden: field is immutable when `immutable` is set")],
                )


__all__ = ["ApiError", "BuiltinValidators", "compile_crd_validator", "validate_object"]
