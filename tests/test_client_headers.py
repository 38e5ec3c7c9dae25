"""The response-header parser (msp_dashboard/site24x7/headers.py) gives what http.client's
own gives, for every kind of header block, and reads the stream alike."""

from __future__ import annotations

import email.parser
import http.client
import io
import random

import pytest

from msp_dashboard.site24x7 import headers

SITE24X7_LIKE = (
    b"Server: ZGS\r\nDate: Sat, 28 Nov 2026 03:00:00 GMT\r\n"
    b"Content-Type: application/json;charset=UTF-8\r\nContent-Length: 1234\r\n"
    b"Connection: keep-alive\r\nSet-Cookie: a=1; Path=/; Secure\r\nSet-Cookie: b=2\r\n"
    b"X-Content-Type-Options: nosniff\r\nStrict-Transport-Security: max-age=63072000\r\n"
    b"Cache-Control: no-cache\r\nX-Empty:\r\nX-Spaces:   padded value  \r\n\r\n"
)
ODD_BLOCKS = [
    b"\r\n",
    b"",
    b"X-A: 1\n\n",  # bare LF line ends
    b"X-A: 1\r\nX-A: 2\r\n\r\n",  # repeated
    b"X-Folded: one\r\n two\r\n\tthree\r\n\r\n",  # obsolete line folding
    b" X-First: continuation\r\nX-B: 1\r\n\r\n",
    b"No colon here\r\nX-B: 1\r\n\r\n",
    b": no name\r\nX-B: 1\r\n\r\n",
    b"X-Bad Name: 1\r\n\r\n",
    b"From someone\r\nX-B: 1\r\n\r\n",
    b"X-CR: a\rb\r\n\r\n",
    b"X-Latin: caf\xe9\r\n\r\n",
    b"Content-Type: multipart/byteranges; boundary=x\r\n\r\n",
    b"Content-Type: message/rfc822\r\nX-A: 1\r\n\r\n",  # the email parser nests a message
    b"content-type: Message/HTTP\r\n\r\n",
    b"content-type: text/html\r\nCONTENT-LENGTH: 3\r\n\r\n",
    b"X-A: 1\r\nX-B: 2",  # the stream ends without a blank line
    b"X-A:no-space\r\nX-B:\t tab first\r\n\r\n",
]


def stdlib(data: bytes):
    fp = io.BytesIO(data + b"BODY")
    lines = http.client._read_headers(fp)
    parsed = email.parser.Parser(_class=http.client.HTTPMessage).parsestr(
        b"".join(lines).decode("iso-8859-1")
    )
    return parsed, fp.read()


def ours(data: bytes):
    fp = io.BytesIO(data + b"BODY")
    return headers.parse_headers(fp), fp.read()


def shape(message) -> tuple:
    """Everything a parsed message holds, nested messages included, comparable with ==."""
    fields = {k: v for k, v in vars(message).items() if k not in ("defects", "_payload")}
    payload = message._payload
    if isinstance(payload, list):
        payload = [shape(part) for part in payload]
    defects = [(type(d), str(d)) for d in message.defects]
    return type(message), sorted(fields.items(), key=str), defects, payload


def same(data: bytes) -> None:
    (expected, rest_expected), (got, rest) = stdlib(data), ours(data)
    assert got.items() == expected.items()
    assert shape(got) == shape(expected)
    assert rest == rest_expected  # the body is left where http.client leaves it


@pytest.mark.parametrize("data", [SITE24X7_LIKE, *ODD_BLOCKS])
def test_each_kind_of_block_parses_as_http_client_parses_it(data):
    same(data)


def test_random_blocks_parse_as_http_client_parses_them():
    rng = random.Random(7)
    alphabet = [b"a", b"Z", b"-", b":", b" ", b"\t", b"\r", b"\xe9", b";", b"=", b"From "]
    alphabet += [b"\x85", b"\x0b", b"\x0c", b"\x1c", b"\x00", b"\x7f"]  # other line breaks
    types = [b"message/rfc822", b"multipart/mixed; boundary=b", b"text/html", b"Message/http", b""]
    for _ in range(2000):
        lines = []
        for _ in range(rng.randint(0, 6)):
            name = b"".join(rng.choices([b"X", b"y", b"-", b"1"], k=rng.randint(0, 6)))
            value = b"".join(rng.choices(alphabet, k=rng.randint(0, 8)))
            if rng.random() < 0.2:  # the types the email parser treats apart
                name = rng.choice([b"Content-Type", b"content-type"])
                value = rng.choice(types) + value
            lines.append(name + rng.choice([b": ", b":", b" ", b""]) + value)
        end = rng.choice([b"\r\n", b"\n"])
        same(b"".join(line + end for line in lines) + end)


def test_the_limits_are_http_clients():
    with pytest.raises(http.client.LineTooLong):
        headers.parse_headers(io.BytesIO(b"X: " + b"a" * 70000 + b"\r\n\r\n"))
    with pytest.raises(http.client.HTTPException, match="more than 100 headers"):
        headers.parse_headers(io.BytesIO(b"X: 1\r\n" * 101 + b"\r\n"))


def test_responses_of_this_process_use_it():
    """Installed with the transport: http.client reads every response's headers with it."""
    import msp_dashboard.site24x7.http  # noqa: F401 - installs it

    assert http.client.parse_headers is headers.parse_headers
