"""http.client's response-header parser, made cheap for the plain header blocks servers send.

http.client hands every response's header block to the email package's FeedParser, built for
whole mail messages: a tenth of a worker's CPU per refresh went to it (py-spy, issue 7). A
block whose every line is a plain `Name: value` (what Site24x7, and nearly every server,
sends) is read here into the same `HTTPMessage`, header by header as the email parser stores
them (policy compat32: the name as sent, the value without its leading blanks and line end),
with the same empty body. Any other block (a folded line, a line without a name, a stray CR,
an envelope line, a multipart or message type) goes to the email parser exactly as before, so its
result and its defects do not change. The limits (line length, number of headers) are
http.client's own.

`install()` puts it in place of `http.client.parse_headers`, which http.client (and so
urllib3 and requests) and http.server call through the module."""

from __future__ import annotations

import email.parser
import http.client
import re

_MAXLINE = getattr(http.client, "_MAXLINE", 65536)
_MAXHEADERS = getattr(http.client, "_MAXHEADERS", 100)
# A header line the email parser reads as one field: printable non-colon name, then a colon
# (its headerRE, minus the empty name it flags as a defect); one line end, at the end only.
_PLAIN = re.compile(r"[\041-\071\073-\176]+:[^\r\n]*\r?\n\Z")
_END = (b"\r\n", b"\n", b"")


def parse_headers(fp, _class=http.client.HTTPMessage):
    """`http.client.parse_headers`: the same reading of `fp`, the same message."""
    lines = _read_lines(fp)
    text = [line.decode("iso-8859-1") for line in lines[:-1]]
    message = _plain(text, _class)
    if message is None:
        return email.parser.Parser(_class=_class).parsestr("".join(text) + lines[-1].decode())
    return message


def _read_lines(fp) -> list[bytes]:
    """The header lines and the line that ends them, as http.client reads them."""
    lines = []
    while True:
        line = fp.readline(_MAXLINE + 1)
        if len(line) > _MAXLINE:
            raise http.client.LineTooLong("header line")
        lines.append(line)
        if len(lines) > _MAXHEADERS:
            raise http.client.HTTPException(f"got more than {_MAXHEADERS} headers")
        if line in _END:
            return lines


def _plain(text: list[str], message_class):
    """The message of a block of plain header lines; None for any other block."""
    message = message_class()
    for line in text:
        if not _PLAIN.match(line):
            return None
        name, value = line.split(":", 1)
        message.set_raw(name, value.lstrip(" \t").rstrip("\r\n"))
    if message.get_content_maintype() in ("multipart", "message"):  # the email parser
        return None  # nests a message in these (or notes a defect): its result, not ours
    message.set_payload("")
    return message


def install() -> None:
    """Use `parse_headers` for every response (and request) header block of this process."""
    http.client.parse_headers = parse_headers
