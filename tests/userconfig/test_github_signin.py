"""Sign in with GitHub (allauth's socialaccount flow) against the fake GitHub, with Django's test client:
off unless configured, sign-up only when allowed, the OAuth state checked, no token kept, shown or logged."""

from __future__ import annotations

import logging
import urllib.parse
import urllib.request

import pytest
from allauth.socialaccount.models import SocialAccount, SocialToken
from django.test import Client
from django.test.utils import override_settings

from core.models import AuditEntry
from tests.factories import UserFactory
from tests.github.helpers import _NoRedirect, github_settings

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery"
URLS = ["/accounts/github/login/", "/accounts/github/login/callback/?code=x&state=y"]


def authorize(client: Client, process: str = "login") -> tuple[str, dict[str, str]]:
    """Start the flow on Tenter, follow the fake's authorize page; return the callback URL and its query."""
    start = client.post("/accounts/github/login/", {"process": process})
    assert start.status_code == 302, start.content
    authorize_url = start["Location"]
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        opener.open(authorize_url, timeout=10)
        raise AssertionError("the authorize page did not redirect")
    except urllib.error.HTTPError as exc:
        assert exc.code == 302
        location = exc.headers["Location"]
    parts = urllib.parse.urlsplit(location)
    return f"{parts.path}?{parts.query}", dict(urllib.parse.parse_qsl(parts.query))


@pytest.fixture
def gh(fakegithub):
    with github_settings(fakegithub):
        yield fakegithub


def test_off_without_client_id_no_button_and_urls_not_served(client, settings):
    settings.GITHUB_CLIENT_ID = ""
    page = client.get("/login/")
    assert page.status_code == 200
    assert b"Sign in with GitHub" not in page.content
    assert b"/accounts/github/" not in page.content
    for url in URLS:
        assert client.get(url).status_code == 404, url
        assert client.post(url).status_code == 404, url
    user = UserFactory()
    user.set_password(PASSWORD)
    user.save()
    # password login works as before
    response = client.post("/login/", {"username": user.username, "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/"
    settings_page = client.get("/settings/")
    assert b"Link GitHub" not in settings_page.content and b'id="github"' not in settings_page.content


def test_authorize_goes_to_the_configured_web_url_with_a_state(client, gh):
    start = client.post("/accounts/github/login/")
    assert start.status_code == 302
    url = urllib.parse.urlsplit(start["Location"])
    assert f"{url.scheme}://{url.netloc}" == gh.base_url
    assert url.path == "/login/oauth/authorize"
    query = dict(urllib.parse.parse_qsl(url.query))
    assert query["client_id"] == gh.app["client_id"] and query["state"]
    assert "Sign in with GitHub" in client.get("/login/").content.decode()


def test_new_identity_signs_up_only_when_signup_is_enabled(client, gh, settings):
    settings.SIGNUP_ENABLED = False
    callback, _ = authorize(client)
    closed = client.get(callback)
    assert closed.status_code == 200
    assert "sign-up is closed on this server" in closed.content.decode()
    assert not SocialAccount.objects.exists()
    assert "_auth_user_id" not in client.session

    settings.SIGNUP_ENABLED = True
    callback, _ = authorize(client)
    done = client.get(callback)
    assert done.status_code == 302 and done["Location"] == "/", done.content
    account = SocialAccount.objects.get(provider="github")
    assert account.user.username == "octocat" and not account.user.has_usable_password()
    assert client.get("/").status_code == 200
    assert int(client.session["_auth_user_id"]) == account.user.pk


def test_an_existing_username_is_never_taken_over(client, gh, settings):
    settings.SIGNUP_ENABLED = True
    local = UserFactory(username="octocat")
    callback, _ = authorize(client)
    assert client.get(callback).status_code == 302
    account = SocialAccount.objects.get(provider="github")
    assert account.user != local and account.user.username == "octocat-2"


def test_a_forged_or_replayed_state_is_refused(client, gh, settings):
    settings.SIGNUP_ENABLED = True
    callback, query = authorize(client)
    forged = callback.replace(query["state"], "forged-state")
    refused = client.get(forged)
    assert refused.status_code == 401 and b"data-github-error" in refused.content
    assert not SocialAccount.objects.exists()
    # another browser (no stashed state) cannot finish this one's flow either
    other = Client()
    assert b"data-github-error" in other.get(callback).content
    assert not SocialAccount.objects.exists()


def test_link_from_settings_then_sign_in_with_it_then_unlink(client, gh, settings):
    settings.SIGNUP_ENABLED = False
    user = UserFactory()
    user.set_password(PASSWORD)
    user.save()
    client.force_login(user)
    assert b"Link GitHub" in client.get("/settings/").content
    callback, _ = authorize(client, process="connect")
    linked = client.get(callback)
    assert linked.status_code == 302 and linked["Location"].startswith("/settings/"), linked.content
    page = client.get("/settings/").content.decode()
    assert "Connected as <strong>octocat</strong>" in page

    fresh = Client()
    callback, _ = authorize(fresh)
    assert fresh.get(callback).status_code == 302
    assert int(fresh.session["_auth_user_id"]) == user.pk

    assert client.post("/settings/github/unlink").status_code == 302
    assert not SocialAccount.objects.filter(user=user).exists()
    assert AuditEntry.objects.filter(action="github.unlink").exists()
    assert b"Link GitHub" in client.get("/settings/").content


def test_identity_linked_to_another_user_is_not_moved(client, gh):
    owner = UserFactory()
    SocialAccount.objects.create(user=owner, provider="github", uid=str(gh.ensure_user("octocat")["id"]))
    other = UserFactory()
    client.force_login(other)
    callback, _ = authorize(client, process="connect")
    client.get(callback)
    assert SocialAccount.objects.get(provider="github").user == owner


def test_unlink_refused_when_github_is_the_only_way_in(client, gh, settings):
    settings.SIGNUP_ENABLED = True
    callback, _ = authorize(client)
    client.get(callback)
    page = client.get("/settings/").content.decode()
    assert "Connected as" in page and "Unlink GitHub" not in page
    client.post("/settings/github/unlink")
    assert SocialAccount.objects.filter(provider="github").exists()


def test_no_token_in_pages_logs_or_database(client, gh, settings, caplog):
    settings.SIGNUP_ENABLED = True
    caplog.set_level(logging.DEBUG)
    with override_settings(SOCIALACCOUNT_STORE_TOKENS=False):
        callback, query = authorize(client)
        pages = [
            client.get(callback, follow=True).content.decode(),
            client.get("/settings/").content.decode(),
        ]
    tokens = list(gh.state["user_tokens"])
    assert tokens, "the fake issued no token"
    secret = gh.app["client_secret"]
    logs = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    for token in [*tokens, secret, query["code"]]:
        for text in [*pages, logs]:
            assert token not in text
    assert not SocialToken.objects.exists()
    account = SocialAccount.objects.get(provider="github")
    assert all(token not in str(account.extra_data) for token in tokens)
