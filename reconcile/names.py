"""Kubernetes object names and hostnames for Tenter resources (pure: no Django, no network).

Every name an object gets in a cluster is computed here, so the reconcilers, the services that
record intent and the tests agree on them. The shapes follow the reference (fulling §4.2) except
that runs of other characters become a hyphen instead of vanishing ("My App" -> "my-app").
"""

from __future__ import annotations

import ipaddress
import re
import secrets
import string
import unicodedata
from typing import Protocol
from urllib.parse import urlsplit

SLUG_MAX = 20
SUFFIX_LENGTH = 8
CLAIM_TEMPLATE = "vn-homevn-fulling"
INGRESS_KINDS = ("app", "ttyd", "filebrowser")

_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_NOT_SLUG = re.compile(r"[^a-z0-9]+")


class ChoiceSource(Protocol):
    """Anything with `choice(seq)`: the `secrets` module (default) or a seeded `random.Random`."""

    def choice(self, seq: str, /) -> str: ...


def is_dns1123_label(value: str) -> bool:
    """RFC 1123 label: at most 63 of [a-z0-9-], starting and ending alphanumeric."""
    return isinstance(value, str) and len(value) <= 63 and _DNS1123_LABEL.fullmatch(value) is not None


def slugify_project(name: str) -> str:
    """The project part of object names: lowercase [a-z0-9-], at most 20 characters, starts with a letter.

    Accents are dropped first ("Café" -> "cafe"); any other run of characters outside [a-z0-9]
    becomes one hyphen; leading/trailing hyphens are trimmed; a slug that would be empty or start
    with a digit gets a "p" in front.
    """
    decomposed = unicodedata.normalize("NFKD", str(name))
    ascii_ish = "".join(ch for ch in decomposed if not unicodedata.combining(ch)).lower()
    slug = _NOT_SLUG.sub("-", ascii_ish).strip("-")
    if not slug or not slug[0].isalpha():
        slug = "p" + slug
    return slug[:SLUG_MAX].rstrip("-")


def _suffix(rng: ChoiceSource) -> str:
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(SUFFIX_LENGTH))


def _checked(name: str) -> str:
    if not is_dns1123_label(name):
        raise ValueError(f"generated name {name!r} is not a DNS-1123 label")
    return name


def resource_name(project_name: str, rng: ChoiceSource = secrets) -> str:
    """A sandbox (StatefulSet) name: `{slug}-{8 random a-z}`."""
    return _checked(f"{slugify_project(project_name)}-{_suffix(rng)}")


def database_name(project_name: str, rng: ChoiceSource = secrets) -> str:
    """A KubeBlocks cluster name: `{slug}-db-{8 random a-z}` (as the reference)."""
    return _checked(f"{slugify_project(project_name)}-db-{_suffix(rng)}")


# -- names derived from a StatefulSet / cluster name ------------------------------------------


def service_name(sts: str) -> str:
    return f"{sts}-service"


def ingress_name(sts: str, kind: str) -> str:
    if kind not in INGRESS_KINDS:
        raise ValueError(f"unknown ingress kind {kind!r}; expected one of {', '.join(INGRESS_KINDS)}")
    return f"{sts}-{kind}-ingress"


def ingress_names(sts: str) -> list[str]:
    return [ingress_name(sts, kind) for kind in INGRESS_KINDS]


def env_secret_name(sts: str) -> str:
    return f"{sts}-env"


def pvc_name(sts: str) -> str:
    """The PVC the StatefulSet's claim template creates for pod 0."""
    return f"{CLAIM_TEMPLATE}-{sts}-0"


def pod_name(sts: str) -> str:
    return f"{sts}-0"


def db_account_secret(cluster: str) -> str:
    """KubeBlocks account Secret (keys username/password) of the postgres superuser."""
    return f"{cluster}-postgresql-account-postgres"


def db_host(cluster: str, namespace: str) -> str:
    return f"{cluster}-postgresql.{namespace}.svc"


# -- hosts ------------------------------------------------------------------------------------


def ingress_domain(server_url: str, override: str = "") -> str:
    """The domain under which sandbox hosts live.

    `override` (the INGRESS_DOMAIN setting) wins. Otherwise the reference's rule: the API server's
    hostname, with the first `sealos.io` replaced by `sealos.app` when the host ends with
    `sealos.io` (https://usw.sealos.io:6443 -> usw.sealos.app). An IP address cannot be part of
    an Ingress host, so an IP server (a local simulator) maps to `{ip}.sslip.io`.
    """
    if override and override.strip():
        return override.strip().strip(".").lower()
    text = (server_url or "").strip()
    if "://" not in text:
        text = "https://" + text
    try:
        host = (urlsplit(text).hostname or "").strip(".").lower()
    except ValueError:
        host = ""
    if not host:
        raise ValueError(f"cannot derive an ingress domain from the server URL {server_url!r}")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None:
        text_ip = ip.exploded.replace(":", "-") if ip.version == 6 else str(ip)
        return f"{text_ip}.sslip.io"
    if host.endswith("sealos.io"):
        host = host.replace("sealos.io", "sealos.app", 1)
    return host


def _host(sts: str, kind: str, domain: str) -> str:
    return f"{sts}-{kind}.{domain}"


def app_host(sts: str, domain: str) -> str:
    return _host(sts, "app", domain)


def ttyd_host(sts: str, domain: str) -> str:
    return _host(sts, "ttyd", domain)


def filebrowser_host(sts: str, domain: str) -> str:
    return _host(sts, "filebrowser", domain)


def host_for(sts: str, kind: str, domain: str) -> str:
    if kind not in INGRESS_KINDS:
        raise ValueError(f"unknown ingress kind {kind!r}")
    return _host(sts, kind, domain)
