"""Parse an uploaded kubeconfig at save time: no network, no Kubernetes client, just what Tenter needs
to know about it, and a refusal (with the reason) of anything that cannot work or is unsafe to run."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import yaml

from core.text import YAML_MAX_DEPTH, text_problem, yaml_depth_problem
from reconcile import names

MAX_KUBECONFIG_BYTES = 256 * 1024
MAX_SERVER_URL = 512  # UserConfig.server
MAX_HOST = 253  # a DNS name; UserConfig.server_host


class KubeconfigError(ValueError):
    def __init__(self, message: str, code: str = "invalid_kubeconfig"):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class KubeconfigInfo:
    namespace: str
    server: str
    server_host: str
    context: str
    user: str


# Fields that make the client read files or run programs on *our* machine: a user-uploaded
# kubeconfig must carry its credentials inline.
_FORBIDDEN_USER_FIELDS = {
    "exec": "runs a local program",
    "auth-provider": "needs a local auth provider",
    "tokenFile": "reads a local file",
    "client-certificate": "reads a local file (use client-certificate-data)",
    "client-key": "reads a local file (use client-key-data)",
}
_FORBIDDEN_CLUSTER_FIELDS = {"certificate-authority": "reads a local file (use certificate-authority-data)"}


def _named_entry(data: Mapping[str, Any], section: str, name: str, what: str) -> Mapping[str, Any]:
    entries = data.get(section)
    if entries is not None and not isinstance(entries, list):
        raise KubeconfigError(f"'{section}' must be a list")
    for entry in entries or []:
        if isinstance(entry, Mapping) and entry.get("name") == name:
            body = entry.get(what)
            if not isinstance(body, Mapping):
                raise KubeconfigError(f"{what} '{name}' has no {what} section")
            return body
    raise KubeconfigError(f"{what} '{name}' is not defined in '{section}'")


def load(text: str | bytes, *, allow_insecure_tls: bool = False) -> tuple[dict[str, Any], KubeconfigInfo]:
    if isinstance(text, bytes | bytearray):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise KubeconfigError("not valid UTF-8 text") from None
    if not isinstance(text, str) or not text.strip():
        raise KubeconfigError("the kubeconfig is empty")
    _check_input_limits(text)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or "syntax error"
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise KubeconfigError(f"not valid YAML: {problem}{where}") from None
    if not isinstance(data, dict):
        raise KubeconfigError("not a kubeconfig: expected a YAML mapping")

    current = data.get("current-context")
    if not current or not isinstance(current, str):
        raise KubeconfigError("no current-context")
    context = _named_entry(data, "contexts", current, "context")
    namespace = context.get("namespace")
    if not namespace or not isinstance(namespace, str):
        raise KubeconfigError(f"current context '{current}' has no namespace")
    if not names.is_dns1123_label(namespace):
        raise KubeconfigError(f"namespace '{namespace}' of context '{current}' is not a valid namespace name")

    cluster_name = context.get("cluster")
    if not cluster_name or not isinstance(cluster_name, str):
        raise KubeconfigError(f"current context '{current}' has no cluster")
    cluster = _named_entry(data, "clusters", cluster_name, "cluster")
    server = cluster.get("server")
    if not server or not isinstance(server, str):
        raise KubeconfigError(f"cluster '{cluster_name}' has no server")
    try:
        parts = urlsplit(server.strip())
        host = parts.hostname
        _ = parts.port  # raises ValueError on a bad port
    except ValueError:
        raise KubeconfigError(f"cluster '{cluster_name}' has an invalid server URL '{server}'") from None
    if parts.scheme not in ("https", "http") or not host:
        raise KubeconfigError(f"cluster '{cluster_name}' server '{server}' is not an http(s) URL")
    for field_name, why in _FORBIDDEN_CLUSTER_FIELDS.items():
        if cluster.get(field_name):
            raise KubeconfigError(f"cluster '{cluster_name}' uses '{field_name}', which {why}")
    _check_cluster_limits(cluster_name, cluster, host, allow_insecure_tls)

    user_name = context.get("user") or ""
    if user_name:
        if not isinstance(user_name, str):
            raise KubeconfigError(f"current context '{current}' has an invalid user")
        user = _named_entry(data, "users", user_name, "user")
        for field_name, why in _FORBIDDEN_USER_FIELDS.items():
            if user.get(field_name):
                raise KubeconfigError(
                    f"user '{user_name}' uses '{field_name}', which {why}; upload a kubeconfig with "
                    "inline credentials (token or client-certificate-data/client-key-data)"
                )
    info = KubeconfigInfo(
        namespace=namespace, server=server.strip(), server_host=host, context=current, user=str(user_name)
    )
    return data, info


# --- input hardening: size, depth and characters of the upload; the server URL's length; TLS checks ---


def _check_input_limits(text: str) -> None:
    problem = text_problem(text)
    if problem:
        raise KubeconfigError(f"the kubeconfig {problem}", code="invalid_characters")
    if len(text.encode("utf-8")) > MAX_KUBECONFIG_BYTES:
        raise KubeconfigError(
            f"the kubeconfig is larger than {MAX_KUBECONFIG_BYTES // 1024} KiB", code="kubeconfig_too_large"
        )
    problem = yaml_depth_problem(text, YAML_MAX_DEPTH)
    if problem:
        raise KubeconfigError(f"the kubeconfig is {problem}", code="kubeconfig_too_deep")


def _check_cluster_limits(
    cluster_name: str, cluster: Mapping[str, Any], host: str, allow_insecure_tls: bool
) -> None:
    server = str(cluster.get("server", ""))
    if len(server.strip()) > MAX_SERVER_URL:
        raise KubeconfigError(
            f"cluster '{cluster_name}' has a server URL longer than {MAX_SERVER_URL} characters"
        )
    if len(host) > MAX_HOST:
        raise KubeconfigError(f"cluster '{cluster_name}' has a server host longer than {MAX_HOST} characters")
    if cluster.get("insecure-skip-tls-verify") and not allow_insecure_tls:
        raise KubeconfigError(
            f"cluster '{cluster_name}' sets 'insecure-skip-tls-verify', which turns off the check of the "
            "cluster's certificate; upload a kubeconfig with certificate-authority-data instead",
            code="insecure_kubeconfig",
        )


def parse(text: str | bytes, *, allow_insecure_tls: bool = False) -> KubeconfigInfo:
    """Check a kubeconfig without any network call; raise KubeconfigError with a human reason.
    `insecure-skip-tls-verify` is refused unless the operator allows it (KUBECONFIG_ALLOW_INSECURE_TLS)."""
    return load(text, allow_insecure_tls=allow_insecure_tls)[1]
