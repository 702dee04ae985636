"""Names and hosts of Kubernetes objects (reconcile/names.py): pure, no cluster, no database."""

from __future__ import annotations

import random
import re

import pytest

from reconcile import names
from tests.k8s_names import is_dns1123_subdomain


@pytest.mark.parametrize(
    ("raw", "slug"),
    [
        ("My App", "my-app"),
        ("  Hello   World!! ", "hello-world"),
        ("hello_world.v2", "hello-world-v2"),
        ("Café Über", "cafe-uber"),
        ("naïve résumé", "naive-resume"),
        ("日本語のプロジェクト", "p"),
        ("", "p"),
        ("---", "p"),
        ("123abc", "p123abc"),
        ("-9lives", "p9lives"),
        ("--x--", "x"),
        ("ABC", "abc"),
        ("a" * 19 + " b", "a" * 19),  # truncation must not leave a trailing hyphen
        ("The Quick Brown Fox Jumps Over", "the-quick-brown-fox"),
    ],
)
def test_slugify_project(raw: str, slug: str) -> None:
    assert names.slugify_project(raw) == slug


@pytest.mark.parametrize(
    "raw", ["x" * 200, "1" * 50, "Ünïcödé " * 10, "a-" * 30, "!!!", "Zürich 2024 — prod"]
)
def test_slugs_are_short_dns_labels_starting_with_a_letter(raw: str) -> None:
    slug = names.slugify_project(raw)
    assert 1 <= len(slug) <= names.SLUG_MAX
    assert slug[0].isalpha()
    assert names.is_dns1123_label(slug)
    assert not slug.endswith("-")


def test_resource_name_shape() -> None:
    name = names.resource_name("My Cool App")
    assert re.fullmatch(r"my-cool-app-[a-z]{8}", name)
    assert names.is_dns1123_label(name)


def test_resource_name_is_random_and_seedable() -> None:
    drawn = {names.resource_name("app") for _ in range(50)}
    assert len(drawn) == 50
    assert names.resource_name("app", rng=random.Random(7)) == names.resource_name(
        "app", rng=random.Random(7)
    )


def test_resource_name_validates_before_returning() -> None:
    class Uppercase:
        def choice(self, seq: str) -> str:
            return "A"

    with pytest.raises(ValueError, match="DNS-1123"):
        names.resource_name("app", rng=Uppercase())


def test_database_name_shape() -> None:
    name = names.database_name("Shop Backend")
    assert re.fullmatch(r"shop-backend-db-[a-z]{8}", name)
    assert names.is_dns1123_label(name)


def test_longest_names_still_fit() -> None:
    sts = names.resource_name("x" * 100)
    db = names.database_name("x" * 100)
    assert len(sts) == 29
    assert len(db) == 32
    derived_labels = [
        names.service_name(sts),
        names.env_secret_name(sts),
        names.pvc_name(sts),
        names.pod_name(sts),
        *names.ingress_names(sts),
        names.db_account_secret(db),
    ]
    for derived in derived_labels:
        assert names.is_dns1123_label(derived), derived
    for host in (names.app_host(sts, "usw.sealos.app"), names.db_host(db, "ns-abcdefgh")):
        assert is_dns1123_subdomain(host)


def test_derived_names() -> None:
    sts = "my-app-abcdefgh"
    assert names.service_name(sts) == "my-app-abcdefgh-service"
    assert names.ingress_name(sts, "app") == "my-app-abcdefgh-app-ingress"
    assert names.ingress_name(sts, "ttyd") == "my-app-abcdefgh-ttyd-ingress"
    assert names.ingress_name(sts, "filebrowser") == "my-app-abcdefgh-filebrowser-ingress"
    assert names.env_secret_name(sts) == "my-app-abcdefgh-env"
    assert names.pvc_name(sts) == "vn-homevn-fulling-my-app-abcdefgh-0"
    assert names.pod_name(sts) == "my-app-abcdefgh-0"
    assert names.db_account_secret("pg1") == "pg1-postgresql-account-postgres"
    assert names.db_host("pg1", "ns-x") == "pg1-postgresql.ns-x.svc"
    with pytest.raises(ValueError):
        names.ingress_name(sts, "admin")


def test_hosts() -> None:
    assert names.app_host("s-abcdefgh", "usw.sealos.app") == "s-abcdefgh-app.usw.sealos.app"
    assert names.ttyd_host("s-abcdefgh", "usw.sealos.app") == "s-abcdefgh-ttyd.usw.sealos.app"
    assert names.filebrowser_host("s-abcdefgh", "usw.sealos.app") == "s-abcdefgh-filebrowser.usw.sealos.app"


@pytest.mark.parametrize(
    ("server", "override", "domain"),
    [
        ("https://usw.sealos.io:6443", "", "usw.sealos.app"),
        ("https://sealos.io", "", "sealos.app"),
        ("https://cloud.sealos.io", "", "cloud.sealos.app"),
        ("https://hzh.sealos.run:6443", "", "hzh.sealos.run"),
        ("https://sealos.io.example.com:6443", "", "sealos.io.example.com"),  # does not end with sealos.io
        ("https://API.Example.COM:6443/", "", "api.example.com"),
        ("usw.sealos.io:6443", "", "usw.sealos.app"),  # bare host:port
        ("https://usw.sealos.io:6443", "apps.example.org", "apps.example.org"),
        ("https://usw.sealos.io:6443", "  Apps.Example.org. ", "apps.example.org"),
        ("https://127.0.0.1:6443", "", "127.0.0.1.sslip.io"),  # an IP cannot be part of an Ingress host
        ("https://[::1]:6443", "", "0000-0000-0000-0000-0000-0000-0000-0001.sslip.io"),
    ],
)
def test_ingress_domain(server: str, override: str, domain: str) -> None:
    assert names.ingress_domain(server, override) == domain
    assert is_dns1123_subdomain(names.app_host("s-abcdefgh", domain))


@pytest.mark.parametrize("server", ["", "https://", "not a url at all://"])
def test_ingress_domain_needs_a_host(server: str) -> None:
    with pytest.raises(ValueError):
        names.ingress_domain(server)


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("a", True),
        ("my-app-abcdefgh", True),
        ("0abc", True),
        ("a" * 63, True),
        ("a" * 64, False),
        ("-abc", False),
        ("abc-", False),
        ("Abc", False),
        ("a_b", False),
        ("a.b", False),
        ("", False),
        ("ab c", False),
    ],
)
def test_is_dns1123_label(value: str, ok: bool) -> None:
    assert names.is_dns1123_label(value) is ok


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("a.b.c", True),
        ("my-app-abcdefgh-app.usw.sealos.app", True),
        (".".join(["a" * 63] * 4)[:253], True),
        (".".join(["a" * 63] * 4), False),  # 255 characters
        ("a..b", False),
        ("a.-b", False),
        ("A.b", False),
        ("a.b.", False),
        ("", False),
    ],
)
def test_is_dns1123_subdomain(value: str, ok: bool) -> None:
    assert is_dns1123_subdomain(value) is ok
