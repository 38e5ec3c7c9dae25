"""gzip for the grid's large answers, at a faster level than Django's.

Django's GZipMiddleware compresses at level 6: for the 2.9 MB grid of 1,000 customers x 10
groups that took 23 ms, a quarter of the page's CPU, on every page load, full poll and
/grid.json. Level 3 takes 10 ms for 292 kB instead of 237 kB. Everything else is Django's:
the Vary header, the Accept-Encoding check, only when shorter, weak ETags, and the
random-length file name in the gzip header against BREACH (GZipMiddleware.max_random_bytes).
Streaming answers go to Django's middleware unchanged."""

import gzip
import secrets

from django.middleware.gzip import GZipMiddleware, re_accepts_gzip
from django.utils.cache import patch_vary_headers
from django.utils.decorators import decorator_from_middleware

LEVEL = 3


def compress(data: bytes, *, max_random_bytes: int) -> bytes:
    """django.utils.text.compress_string at LEVEL: gzip with a file name of random length
    (none when max_random_bytes is 0)."""
    compressed = memoryview(gzip.compress(data, compresslevel=LEVEL, mtime=0))
    if not max_random_bytes:
        return bytes(compressed)
    header = bytearray(compressed[:10])
    header[3] = gzip.FNAME
    name = b"a" * secrets.randbelow(max_random_bytes) + b"\x00"
    return bytes(header) + name + compressed[10:]


class FastGZipMiddleware(GZipMiddleware):
    def process_response(self, request, response):
        if response.streaming or len(response.content) < 200:
            return super().process_response(request, response)
        if response.has_header("Content-Encoding"):
            return response
        patch_vary_headers(response, ("Accept-Encoding",))
        if not re_accepts_gzip.search(request.META.get("HTTP_ACCEPT_ENCODING", "")):
            return response
        compressed = compress(response.content, max_random_bytes=self.max_random_bytes)
        if len(compressed) >= len(response.content):
            return response
        response.content = compressed
        response.headers["Content-Length"] = str(len(compressed))
        etag = response.get("ETag")
        if etag and etag.startswith('"'):
            response.headers["ETag"] = "W/" + etag
        response.headers["Content-Encoding"] = "gzip"
        return response


gzip_page = decorator_from_middleware(FastGZipMiddleware)
"""django.views.decorators.gzip.gzip_page at LEVEL."""
