"""Pure checks of text from outside (no Django, no app): what PostgreSQL and UTF-8 cannot hold, and YAML
nested deep enough to exhaust the stack. Also used by the Kubernetes layer's kubeconfig parser."""

from collections.abc import Iterable

import yaml

# YAML documents we parse (kubeconfigs): a real one is about 6 levels deep.
YAML_MAX_DEPTH = 50


def text_problem(value: str) -> str | None:
    """Why a string cannot be stored or encoded, or None: NUL (PostgreSQL text refuses it) and lone
    surrogates (not encodable as UTF-8; only JSON's \\ud800 escapes produce them)."""
    if "\x00" in value:
        return "contains a NUL character"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "contains an invalid Unicode character (a lone surrogate)"
    return None


def yaml_depth_problem(text: str, max_depth: int = YAML_MAX_DEPTH) -> str | None:
    """Scan a YAML stream's events (PyYAML's parser keeps its own stack; composing is what recurses)
    and say why it is too deep, or None. Syntax errors are left to the real load."""
    depth = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > max_depth:
                    return f"nested more than {max_depth} levels deep"
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError:
        return None
    return None


REDACTED = "••••"
MIN_SECRET = 4  # shorter values would blank out ordinary words


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """`text` with every secret value (of at least MIN_SECRET characters) replaced by ••••, longest
    first (so a secret that contains another is hidden whole). For text that will be logged or stored."""
    values = sorted({s for s in secrets if s and len(s) >= MIN_SECRET}, key=len, reverse=True)
    for value in values:
        if value in text:
            text = text.replace(value, REDACTED)
    return text
