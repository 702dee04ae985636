"""The cluster-facing settings (ingress, TLS, storage, image pull secrets), checked when the process
starts: a bad value stops it with the setting's name and what is wrong. Pure Python (read by
config/settings.py before Django is set up)."""

import json
import re
from collections.abc import Mapping
from typing import Any

_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_ANNOTATION_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")


class ClusterSettingError(ValueError):
    pass


def dns_subdomain(setting: str, value: str, *, allow_empty: bool = True) -> str:
    value = value.strip()
    if not value and allow_empty:
        return ""
    if len(value) > 253 or not _DNS_SUBDOMAIN.fullmatch(value):
        raise ClusterSettingError(
            f"{setting}={value!r} is not a Kubernetes object name (lower-case letters, digits, '-' and '.')."
        )
    return value


def annotation_key(setting: str, key: str) -> str:
    prefix, _, name = key.rpartition("/")
    if (
        (prefix and not _DNS_SUBDOMAIN.fullmatch(prefix))
        or len(name) > 63
        or not _ANNOTATION_NAME.fullmatch(name)
    ):
        raise ClusterSettingError(f"{setting}: {key!r} is not a valid annotation key.")
    return key


def ingress_annotations(setting: str, raw: str, *, snippets_allowed: bool) -> dict[str, str]:
    """A JSON object of extra Ingress annotations. Snippet annotations only when the operator said the
    controller allows them (ingress-nginx >= 1.9 rejects every Ingress that carries one by default)."""
    if not raw.strip():
        return {}
    try:
        data: Any = json.loads(raw)
    except ValueError:
        raise ClusterSettingError(f"{setting} must be a JSON object of strings.") from None
    if not isinstance(data, Mapping) or not all(isinstance(v, str) for v in data.values()):
        raise ClusterSettingError(f"{setting} must be a JSON object of strings.")
    out = {}
    for key, value in data.items():
        annotation_key(setting, str(key))
        if "snippet" in str(key) and not snippets_allowed:
            raise ClusterSettingError(
                f"{setting}: {key!r} is a snippet annotation, which ingress-nginx rejects by default; "
                "set INGRESS_SERVER_SNIPPET=true if your controller allows snippets."
            )
        out[str(key)] = value
    return out


def names(setting: str, values: list[str]) -> tuple[str, ...]:
    return tuple(dns_subdomain(setting, v, allow_empty=False) for v in values if v.strip())
