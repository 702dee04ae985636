"""Repository hygiene that CI must catch: migrations match the models; the compose file is valid."""

import ast
import re
import shutil
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


PACKAGES = (
    "config",
    "core",
    "userconfig",
    "projects",
    "sandboxes",
    "github",
    "reconcile",
    "kubesim",
    "fakegithub",
)


def _lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("userconfig/services.py", "import projects.api", "Layers"),  # a lower layer reaching up
        ("sandboxes/models.py", "import projects.models", "apps depend one way"),
        ("reconcile/names.py", "import sandboxes.models", "Kubernetes layer"),
        ("projects/selectors.py", "import kubernetes", "Only the gateway"),
        ("kubesim/store.py", "import core.errors", "kubesim is a standalone"),
    ],
)
def test_the_layer_contracts_fail_on_a_forbidden_import(tmp_path, module, line, broken):
    """A copy of the code with one forbidden import added: import-linter (a `make test` gate) fails and
    names the contract; the unchanged copy passes."""
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("crds", "__pycache__")
        )
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    clean = _lint_imports(tmp_path)
    assert clean.returncode == 0, clean.stdout
    target = tmp_path / module
    target.write_text(target.read_text() + f"\n{line}  # noqa\n")
    result = _lint_imports(tmp_path)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout and broken in result.stdout


def test_parsing_a_kubeconfig_does_not_load_the_kubernetes_client():
    """The web process validates uploads with reconcile.kube.kubeconfig; the client (about 45 MB a
    process) is for the workers."""
    code = "import sys, reconcile.kube.kubeconfig; assert 'kubernetes' not in sys.modules, 'loaded'"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


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


# --- Nothing outside the repository ------------------------------------------------------------------
# A fresh clone in an empty folder must run, test, build and benchmark: no code, test, script or build
# file may reach a path above the repository (an earlier kubesim read its CRDs from a folder beside it).

CODE_FILES = ("Makefile", "Dockerfile", "docker-compose.yml", "pyproject.toml", ".ci/run")


def _tracked(suffix: str = "") -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True)
    return [ROOT / p for p in out.stdout.split("\0") if p and p.endswith(suffix) and (ROOT / p).is_file()]


def _file_anchor(node: ast.AST) -> bool:
    """`Path(__file__)`, `Path(__file__).resolve()` or `.absolute()`."""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in {"resolve", "absolute"}
    ):
        return _file_anchor(node.func.value)
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "Path"
        and len(node.args) == 1
        and isinstance(node.args[0], ast.Name)
        and node.args[0].id == "__file__"
    )


def _levels_up(node: ast.AST) -> int | None:
    """How many directories above the file's own an expression like Path(__file__).parents[2] climbs."""
    if isinstance(node, ast.Attribute) and node.attr == "parent":
        if _file_anchor(node.value):
            return 0
        inner = _levels_up(node.value)
        return None if inner is None else inner + 1
    if (
        isinstance(node, ast.Subscript)
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "parents"
        and _file_anchor(node.value.value)
        and isinstance(node.slice, ast.Constant)
        and isinstance(node.slice.value, int)
    ):
        return node.slice.value
    return None


def _names_outside(text: str) -> bool:
    return text == ".." or "../" in text or "shared/k8s-schemas" in text


def paths_outside_the_repository(path: Path, source: str) -> list[str]:
    """Places in one Python file that climb above ROOT from __file__ or spell a parent directory."""
    rel = path.relative_to(ROOT)
    found = []
    for node in ast.walk(ast.parse(source, filename=str(rel))):
        levels = _levels_up(node)
        if levels is not None and levels > len(rel.parts) - 1:
            found.append(
                f"{rel}:{node.lineno}: climbs {levels} levels from a folder {len(rel.parts) - 1} deep"
            )
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and _names_outside(node.value):
            found.append(f"{rel}:{node.lineno}: {node.value.strip()[:80]!r}")
    return found


def test_no_code_or_test_reads_a_path_outside_the_repository():
    offenders = []
    for path in _tracked(".py"):
        if path == Path(__file__).resolve():  # its own examples below
            continue
        offenders += paths_outside_the_repository(path, path.read_text())
    for name in CODE_FILES:
        for number, line in enumerate((ROOT / name).read_text().splitlines(), 1):
            if _names_outside(line):
                offenders.append(f"{name}:{number}: {line.strip()}")
    assert offenders == []


@pytest.mark.parametrize(
    ("source", "caught"),
    [
        ("CRDS = Path(__file__).resolve().parents[2] / 'shared'", True),  # from kubesim/x.py: outside
        ("ROOT = Path(__file__).resolve().parents[1]", False),
        ("ROOT = Path(__file__).resolve().parent.parent.parent", True),
        ("ROOT = Path(__file__).parent.parent", False),
        ("CRDS = ROOT / '..' / 'shared'", True),
        ("CRDS = '" + "/".join(("..", "schemas", "kubeblocks")) + "'", True),
        ("CRDS = ROOT / 'kubesim' / 'crds'", False),
    ],
)
def test_the_outside_path_check_catches_what_it_should(source, caught):
    assert bool(paths_outside_the_repository(ROOT / "kubesim" / "x.py", source)) is caught


def test_the_kubeblocks_crds_are_carried_whole_in_the_repository():
    """Every file the README of kubesim/crds/kubeblocks lists is there with its byte size, and it is
    where kubesim loads its CRDs from by default."""
    from kubesim.crd import DEFAULT_CRD_DIR, DEFAULT_CRD_FILES

    assert DEFAULT_CRD_DIR.is_relative_to(ROOT)
    readme = (DEFAULT_CRD_DIR / "README.md").read_text()
    listed = {}
    folder = ""
    for line in readme.splitlines():
        m = re.match(r"^\| (?:`([^`]+)/`|same) \| [^|]+ \| `([^`]+)` \| ([\d,]+) \|", line)
        if m:
            folder = m.group(1) or folder
            listed[f"{folder}/{m.group(2)}"] = int(m.group(3).replace(",", ""))
    assert len(listed) == 6
    actual = {str(p.relative_to(DEFAULT_CRD_DIR)): p.stat().st_size for p in DEFAULT_CRD_DIR.glob("*/*.yaml")}
    assert actual == listed
    assert {rel for rel, _ in DEFAULT_CRD_FILES} <= set(actual)


def test_make_bench_stops_at_once_when_a_benchmark_cannot_run(tmp_path):
    """Without wrk, `make bench` says why before running any benchmark (it used to fail after 26 min)."""
    result = subprocess.run(
        [sys.executable, "benchmarks/run.py", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": str(tmp_path), "HOME": str(tmp_path)},  # nothing on PATH: no wrk
    )
    assert result.returncode == 2
    assert "bench_api needs `wrk`" in result.stderr
    assert "[bench] bench_" not in result.stdout  # no benchmark started
