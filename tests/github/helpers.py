"""Helpers for the GitHub tests: Tenter pointed at a fakegithub, webhooks relayed from it."""

from __future__ import annotations

import urllib.parse
import urllib.request
from typing import Any

from django.test import Client
from django.test.utils import override_settings

from fakegithub.server import FakeGitHub


def github_settings(fake: FakeGitHub) -> override_settings:
    return override_settings(**fake.tenter_settings(), GITHUB_EGRESS_ALLOW_CIDRS=["127.0.0.0/8"])


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def install_through_browser(fake: FakeGitHub, client: Client, account: str = "octocat") -> Any:
    """Connect GitHub as a browser would: Tenter's connect page → the fake's install page → Install →
    back to Tenter's callback. Returns Tenter's response to the callback."""
    fake.callback_url = "http://testserver/github/callback"
    connect = client.get("/github/connect")
    assert connect.status_code == 302, connect.content
    install_url = connect["Location"]
    assert install_url.startswith(fake.base_url + "/apps/"), install_url
    state = urllib.parse.parse_qs(urllib.parse.urlsplit(install_url).query)["state"][0]
    form = urllib.parse.urlencode({"state": state, "account": account}).encode()
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        opener.open(urllib.request.Request(install_url, data=form, method="POST"), timeout=10)
        raise AssertionError("the install page did not redirect")
    except urllib.error.HTTPError as exc:
        assert exc.code == 302
        location = exc.headers["Location"]
    parts = urllib.parse.urlsplit(location)
    assert parts.path == "/github/callback"
    return client.get(f"{parts.path}?{parts.query}")


def relay(fake: FakeGitHub, client: Client, since: int = 0) -> list[Any]:
    """Post the fake's recorded webhook deliveries (from index `since`) to Tenter, signed as GitHub does."""
    out = []
    for delivery in fake.state["deliveries"][since:]:
        headers, body = fake.webhook(delivery["event"], delivery["payload"], delivery=delivery["id"])
        out.append(post_webhook(client, headers, body))
    return out


def post_webhook(client: Client, headers: dict[str, str], body: bytes) -> Any:
    return client.post(
        "/github/webhook",
        data=body,
        content_type="application/json",
        headers={k: v for k, v in headers.items() if k != "Content-Type"},
    )
