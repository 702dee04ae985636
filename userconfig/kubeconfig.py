"""Parse an uploaded kubeconfig at save time: no network, just what we need to know about it."""

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import yaml

MAX_BYTES = 256 * 1024


class KubeconfigError(ValueError):
    pass


@dataclass(frozen=True)
class KubeconfigInfo:
    namespace: str
    server: str
    server_host: str
    context: str


def _named(items: Any, name: str, what: str) -> dict[str, Any]:
    for item in items or []:
        if isinstance(item, dict) and item.get("name") == name:
            value = item.get(what)
            return value if isinstance(value, dict) else {}
    raise KubeconfigError(f"the current context refers to {what} '{name}', which is not defined")


def parse(text: str) -> KubeconfigInfo:
    if len(text.encode()) > MAX_BYTES:
        raise KubeconfigError(f"the kubeconfig is larger than {MAX_BYTES // 1024} KiB")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise KubeconfigError(f"not valid YAML{where}") from None
    if not isinstance(data, dict):
        raise KubeconfigError("not a kubeconfig: expected a YAML mapping")
    current = data.get("current-context")
    if not current:
        raise KubeconfigError("no current-context is set")
    context = _named(data.get("contexts"), current, "context")
    namespace = context.get("namespace")
    if not namespace:
        raise KubeconfigError(f"the current context '{current}' has no namespace")
    cluster = _named(data.get("clusters"), context.get("cluster", ""), "cluster")
    server = cluster.get("server")
    if not server:
        raise KubeconfigError(f"the cluster '{context.get('cluster')}' has no server")
    parts = urlsplit(str(server))
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise KubeconfigError(f"the cluster server '{server}' is not an http(s) URL")
    _named(data.get("users"), context.get("user", ""), "user")
    return KubeconfigInfo(
        namespace=str(namespace), server=str(server), server_host=parts.hostname, context=str(current)
    )
