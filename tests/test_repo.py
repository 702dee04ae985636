"""Repository hygiene that CI must catch: migrations match the models; the compose file is valid."""

import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.django_db
def test_migrations_match_the_models():
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


def test_docker_compose_is_a_valid_compose_file():
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            str(ROOT / "docker-compose.yml"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_only_the_gateway_imports_the_kubernetes_client():
    offenders = []
    for path in ROOT.glob("*/**/*.py"):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in {".venv", "kubesim", "tests", "benchmarks", ".state"} or rel == Path(
            "reconcile/kube.py"
        ):
            continue
        for line in path.read_text().splitlines():
            if line.startswith(("import kubernetes", "from kubernetes")):
                offenders.append(str(rel))
    assert offenders == []


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "SECRET_KEY must be set"),
        ({"SECRET_KEY": "x" * 50}, "FIELD_ENCRYPTION_KEYS must be set"),
    ],
)
def test_production_refuses_to_start_without_its_secrets(env, message):
    import os

    base = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "FIELD_ENCRYPTION_KEYS")}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**base, "DEBUG": "false", **env},
    )
    assert result.returncode != 0
    assert message in result.stderr


def test_production_starts_with_its_secrets():
    import os

    from cryptography.fernet import Fernet

    # (the test runner's own DJANGO_ALLOW_ASYNC_UNSAFE is rightly an error in a deployment)
    env = {
        **{k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"},
        "DEBUG": "false",
        "SECRET_KEY": "a-long-random-production-secret-key-0123456789-abcdefghijklmnop",
        "SECURE_HSTS_SECONDS": "3600",
        "SECURE_SSL_REDIRECT": "true",
        "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "ERROR"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "drf_spectacular" not in result.stderr  # the OpenAPI schema builds without warnings
