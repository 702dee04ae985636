"""CustomResourceDefinition registration and loading of CRD YAML files at startup."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import yaml

from kubesim.resources import Registry, ResourceType
from kubesim.validation import compile_crd_validator

log = logging.getLogger("kubesim")

# Carried in the repository (kubesim/crds/kubeblocks/README.md says where they come from).
DEFAULT_CRD_DIR = Path(__file__).resolve().parent / "crds" / "kubeblocks"
# (relative file, versions to serve or None for all served versions)
DEFAULT_CRD_FILES: list[tuple[str, list[str] | None]] = [
    ("v1.0.2/apps.kubeblocks.io_clusters.yaml", None),
    ("v0.9.5/apps.kubeblocks.io_opsrequests.yaml", None),
    ("v1.0.2/operations.kubeblocks.io_opsrequests.yaml", None),
]


def version_priority(v: str) -> tuple[int, int, int]:
    """Kubernetes version priority: GA > beta > alpha, higher numbers first (as a sort key)."""
    m = re.match(r"^v(\d+)(?:(alpha|beta)(\d+))?$", v)
    if not m:
        return (3, 0, 0)
    major, stage, minor = int(m.group(1)), m.group(2), int(m.group(3) or 0)
    rank = {None: 0, "beta": 1, "alpha": 2}[stage]
    return (rank, -major, -minor)


def crd_types(crd: dict[str, Any], only: list[str] | None = None) -> list[ResourceType]:
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    out = []
    for v in spec.get("versions") or []:
        if not v.get("served", True) or (only and v["name"] not in only):
            continue
        schema = (v.get("schema") or {}).get("openAPIV3Schema")
        out.append(
            ResourceType(
                group=spec["group"],
                version=v["name"],
                plural=names["plural"],
                kind=names["kind"],
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                singular=names.get("singular") or names["kind"].lower(),
                short_names=list(names.get("shortNames") or []),
                status_subresource="status" in (v.get("subresources") or {}),
                has_generation=True,
                custom=True,
                categories=list(names.get("categories") or []),
                validator=compile_crd_validator(schema),
                crd_name=crd["metadata"]["name"],
            )
        )
    out.sort(key=lambda rt: version_priority(rt.version))
    return out


def register_crd(registry: Registry, crd: dict[str, Any]) -> list[ResourceType]:
    types = crd_types(crd)
    registry.remove_crd(crd["metadata"]["name"])
    for rt in types:
        registry.add(rt)
    if types:
        group = types[0].group
        with registry.lock:
            registry.groups[group].sort(key=version_priority)
    return types


def crd_status(crd: dict[str, Any]) -> dict[str, Any]:
    spec = crd.get("spec") or {}
    cond = [
        {
            "type": "NamesAccepted",
            "status": "True",
            "reason": "NoConflicts",
            "message": "no conflicts found",
            "lastTransitionTime": crd["metadata"].get("creationTimestamp"),
        },
        {
            "type": "Established",
            "status": "True",
            "reason": "InitialNamesAccepted",
            "message": "the initial names have been accepted",
            "lastTransitionTime": crd["metadata"].get("creationTimestamp"),
        },
    ]
    return {
        "acceptedNames": spec.get("names") or {},
        "conditions": cond,
        "storedVersions": [v["name"] for v in spec.get("versions") or [] if v.get("storage")],
    }


def load_crd_files(crd_dir: Path | None) -> list[dict[str, Any]]:
    """Load the CRDs kubesim serves. The repository's own copy (crd_dir None) must be whole: a missing
    file there is a broken checkout and raises; a custom directory that lacks them only warns."""
    d = crd_dir or DEFAULT_CRD_DIR
    if crd_dir is None and not d.is_dir():
        raise FileNotFoundError(f"kubesim: CRD directory {d} is missing from the repository")
    if not d.is_dir():
        log.warning("kubesim: CRD directory %s not found; KubeBlocks kinds will not be served", d)
        return []
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    out = []
    if crd_dir is not None and not any((d / rel).exists() for rel, _ in DEFAULT_CRD_FILES):
        files = sorted(d.glob("*.yaml"))
    else:
        files = [d / rel for rel, _ in DEFAULT_CRD_FILES]
    for f in files:
        if not f.exists():
            if crd_dir is None:
                raise FileNotFoundError(f"kubesim: CRD file {f} is missing from the repository")
            log.warning("kubesim: CRD file %s missing", f)
            continue
        with open(f, "rb") as fh:
            for doc in yaml.load_all(fh, Loader=loader):
                if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                    out.append(doc)
    return out
