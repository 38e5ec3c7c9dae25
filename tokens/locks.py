"""Named locks shared by every process of the deployment.

Redis (CI, production): SET NX with an expiry, so a holder that dies frees it by itself.
No Redis (the demo, one machine): an exclusive flock on a file under var/locks/, which the
kernel frees when the holder dies. Django's file cache `add` is check-then-write, not atomic,
so it cannot serve as a lock."""

import contextlib
import fcntl
import hashlib
from collections.abc import Iterator

from django.conf import settings
from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache


def _redis() -> bool:
    return isinstance(caches["default"], RedisCache)


@contextlib.contextmanager
def exclusive(name: str, *, timeout: int = 60) -> Iterator[bool]:
    """Try once to hold lock `name`; yields True when held (released on exit), else False."""
    if _redis():
        key = f"lock:{name}"
        held = bool(cache.add(key, "1", timeout=timeout))
        try:
            yield held
        finally:
            if held:
                cache.delete(key)
        return
    folder = settings.VAR_DIR / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{hashlib.sha256(name.encode()).hexdigest()[:32]}.lock"
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
