"""pytest plugin: a fake GitHub in this process (a thread), one per test that asks for it.

Add ``"fakegithub.testing"`` to ``pytest_plugins``; the ``fakegithub`` fixture yields a `FakeGitHub`
whose server listens on 127.0.0.1 (``fake.base_url``); ``fake.tenter_settings()`` are the GITHUB_*
settings that point Tenter at it.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from fakegithub.server import FakeGitHub, FakeGitHubServer


@pytest.fixture
def fakegithub() -> Iterator[FakeGitHub]:
    state = Path(tempfile.mkdtemp(prefix="fakegithub-"))
    fake = FakeGitHub(state)
    server = FakeGitHubServer(fake)
    server.start()
    try:
        yield fake
    finally:
        server.stop()
        shutil.rmtree(state, ignore_errors=True)
