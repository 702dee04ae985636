"""Kubernetes resource quantities ("20m", "2", "0.5", "25Mi", "1Gi", "1e3") as whole millicores or
bytes. Pure Python: the quota checks and the size checks share it."""

import math
import re
from decimal import Decimal, InvalidOperation

_QUANTITY_RE = re.compile(r"([+]?[0-9]+(?:\.[0-9]*)?|[+]?\.[0-9]+)(?:[eE]([+-]?[0-9]+))?([A-Za-z]{0,2})")
_SUFFIXES = {
    "": Decimal(1),
    "m": Decimal("0.001"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}


class BadQuantity(ValueError):
    pass


def _value(text: str) -> Decimal:
    match = _QUANTITY_RE.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None or match.group(3) not in _SUFFIXES or (match.group(2) and match.group(3)):
        raise BadQuantity(f"'{text}' is not a Kubernetes quantity (e.g. 500m, 2, 512Mi, 1Gi).")
    try:
        number = Decimal(match.group(1))
        if match.group(2):
            number *= Decimal(10) ** int(match.group(2))
    except (InvalidOperation, ValueError):
        raise BadQuantity(f"'{text}' is not a Kubernetes quantity.") from None
    return number * _SUFFIXES[match.group(3)]


def millicores(text: str) -> int:
    """CPU as whole millicores, rounded up as Kubernetes does ("20m" → 20, "2" → 2000, "0.5" → 500)."""
    return math.ceil(_value(text) * 1000)


def bytes_of(text: str) -> int:
    """Memory or storage in bytes, rounded up ("25Mi" → 26214400, "1G" → 10**9)."""
    return math.ceil(_value(text))


def show_cpu(value: int) -> str:
    """Millicores for people: 2000 → "2", 1500 → "1.5", 20 → "20m"."""
    if value % 1000 == 0:
        return str(value // 1000)
    if value % 100 == 0:
        return f"{value / 1000:g}"
    return f"{value}m"


def show_memory(value: int) -> str:
    """Bytes for people, in the largest binary unit that keeps one decimal: 68719476736 → "64Gi"."""
    for unit, size in (("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if value >= size:
            shown = f"{value / size:.1f}".removesuffix(".0")
            return f"{shown}{unit}"
    return str(value)
