"""msp_dashboard.gzip: the grid's answers compressed at a faster level, otherwise as Django's
GZipMiddleware does it (Vary, only when asked, the random-length name against BREACH)."""

from __future__ import annotations

import gzip
import json

import pytest

from msp_dashboard.gzip import LEVEL, compress
from msp_dashboard.site24x7 import Status
from tests.grid_support import make_customer

pytestmark = pytest.mark.django_db

GZIP = {"HTTP_ACCEPT_ENCODING": "gzip, deflate"}


@pytest.fixture
def customers():
    return [
        make_customer(f"Customer {i}", groups=[("Web", Status.UP), ("VPN", Status.DOWN)])
        for i in range(5)
    ]


def _names(grid: dict) -> list[str]:
    return sorted(customer["name"] for customer in grid["customers"])


def _name_length(body: bytes) -> int:
    assert body[:2] == b"\x1f\x8b" and body[3] & gzip.FNAME  # a gzip member with a file name
    return body.index(b"\x00", 10) - 10


def test_the_grid_json_is_gzipped_when_asked_and_reads_the_same(admin_client, customers):
    plain = admin_client.get("/grid.json")
    packed = admin_client.get("/grid.json", **GZIP)
    assert "Content-Encoding" not in plain and "Accept-Encoding" in plain["Vary"]
    assert packed["Content-Encoding"] == "gzip" and "Accept-Encoding" in packed["Vary"]
    assert int(packed["Content-Length"]) == len(packed.content) < len(plain.content)
    unpacked = json.loads(gzip.decompress(packed.content))
    assert _names(plain.json()) == _names(unpacked) == [f"Customer {i}" for i in range(5)]


def test_the_page_and_its_poll_are_gzipped(admin_client, customers):
    for url, extra in (("/", {}), ("/grid/rows/", {"HTTP_HX_REQUEST": "true"})):
        response = admin_client.get(url, **GZIP, **extra)
        assert response.status_code == 200 and response["Content-Encoding"] == "gzip"
        assert "Customer 4" in gzip.decompress(response.content).decode()


def test_the_file_name_has_a_random_length_against_breach(admin_client, customers):
    lengths = {_name_length(admin_client.get("/grid.json", **GZIP).content) for _ in range(6)}
    assert len(lengths) > 1  # all six equal: about one chance in 10^10
    assert all(0 <= n < 100 for n in lengths)


def test_compress_is_valid_gzip_at_its_level():
    data = b"<article class='row'>" * 5000
    packed = compress(data, max_random_bytes=100)
    assert gzip.decompress(packed) == data
    name = _name_length(packed)
    plain = gzip.compress(data, compresslevel=LEVEL, mtime=0)
    assert len(packed) == len(plain) + name + 1  # the same stream, with the name added
    assert compress(data, max_random_bytes=0) == plain  # no name, as Django's without padding
