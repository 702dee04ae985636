"""Kubernetes quantities as the quotas read them."""

import pytest

from core.quantities import BadQuantity, bytes_of, millicores, show_cpu, show_memory


@pytest.mark.parametrize(
    ("text", "value"), [("20m", 20), ("2", 2000), ("0.5", 500), ("2000m", 2000), ("1.5", 1500), ("0.0001", 1)]
)
def test_cpu(text, value):
    assert millicores(text) == value


@pytest.mark.parametrize(
    ("text", "value"),
    [("25Mi", 25 * 2**20), ("4096Mi", 2**32), ("1Gi", 2**30), ("1G", 10**9), ("1e3", 1000), ("512", 512)],
)
def test_memory(text, value):
    assert bytes_of(text) == value


@pytest.mark.parametrize("text", ["", "lots", "1Zi", "1e3Mi", "-1", "1 Gi", "Gi"])
def test_bad_quantities(text):
    with pytest.raises(BadQuantity):
        bytes_of(text)


def test_display():
    assert [show_cpu(v) for v in (2000, 1500, 20)] == ["2", "1.5", "20m"]
    assert [show_memory(v) for v in (64 * 2**30, 75 * 2**20, 1536 * 2**20, 100)] == [
        "64Gi",
        "75Mi",
        "1.5Gi",
        "100",
    ]
