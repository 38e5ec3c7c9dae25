"""The Celery app, configured from Django settings (CELERY_* names)."""

import contextlib
import os
import time
import uuid
from queue import Empty

from celery import Celery
from celery.signals import task_postrun, task_prerun
from kombu.transport import filesystem
from kombu.transport import redis as redis_transport
from kombu.utils.json import dumps, loads

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "msp_dashboard.settings")

app = Celery("msp_dashboard")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
@task_postrun.connect
def close_old_db_connections(task=None, **kwargs) -> None:
    """Database connections live as Django's CONN_MAX_AGE says, around each task as around
    each web request: one that is too old, or broken (CONN_HEALTH_CHECKS), is closed here and
    replaced on next use; a healthy one is reused. Celery's own Django fixup would close every
    connection before and after every task (a new PostgreSQL connection per refresh, several
    ms and a server process each); settings.CELERY_DB_REUSE_MAX turns that off. Eager tasks
    (tests) run inside the caller's transaction and are left alone."""
    if task is not None and getattr(task.request, "is_eager", False):
        return
    from django.db import close_old_connections

    close_old_connections()


class FilesystemChannel(filesystem.Channel):
    """kombu's filesystem transport (the demo's broker, no server to run), made safe for more
    than one process: a message file appears under its final name only once it is complete
    (kombu writes in place, so a worker polling at that moment reads an empty file and stops
    with JSONDecodeError), and a consumer claims a message by renaming it within the broker
    folder, atomic on one filesystem (kombu moves it to /tmp, a copy when /tmp is another
    filesystem, so two workers could both take it). The exchange table has the same race when
    two processes declare the first binding at once: an empty table is read again.

    kombu keeps this transport's bindings in one state per process and records a binding
    there before it writes the exchange file: another thread of the process that published
    in between, or a connection to another broker folder once the binding was recorded,
    found no file, and its message was dropped as undeliverable. The routing table is the
    file's bindings plus those this process has recorded."""

    def get_table(self, exchange):
        table = self._file_table(exchange)
        recorded = self.state.exchanges.get(exchange, {}).get("table", [])
        return table + [filesystem.exchange_queue_t(*row) for row in recorded if row not in table]

    def _file_table(self, exchange):
        for _ in range(50):
            try:
                return super().get_table(exchange)
            except ValueError:  # the table file exists but is not written yet
                time.sleep(0.01)
        return super().get_table(exchange)

    def _put(self, queue, payload, **kwargs):
        name = f"{round(time.monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = f"{final}.part"  # not "<queue>.msg": consumers skip it
        with open(partial, "wb") as handle:
            handle.write(dumps(payload).encode())
        os.replace(partial, final)

    def _get(self, queue):
        wanted = f"{queue}.msg"
        for name in sorted(os.listdir(self.data_folder_in)):
            if name.partition(".")[2] != wanted:
                continue
            claimed = os.path.join(self.processed_folder, f"{name}.{uuid.uuid4().hex}")
            try:
                os.rename(os.path.join(self.data_folder_in, name), claimed)
            except OSError:
                continue  # another consumer took it
            with open(claimed, "rb") as handle:
                payload = handle.read()
            if not self.store_processed:
                os.remove(claimed)
            return loads(payload.decode())
        raise Empty()


class FilesystemTransport(filesystem.Transport):
    """Transport option `drain_timeout` (seconds) caps how long the worker's loop waits for
    a message before it looks at its own state again: tests set it low so a worker stops at
    once instead of after Celery's fixed 2 s."""

    Channel = FilesystemChannel

    def drain_events(self, connection, timeout=None):
        cap = self.client.transport_options.get("drain_timeout")
        if cap and (timeout is None or timeout > cap):
            timeout = cap
        return super().drain_events(connection, timeout=timeout)


class RedisChannel(redis_transport.Channel):
    """kombu's Redis channel, made to survive a broker that goes away (REL-10).

    When the connection to Redis drops while the worker holds unacknowledged messages (the
    staggered refreshes of a round wait in the worker until their ETA), Celery first collects
    the connection, which leaves the transport without its client, then closes it. That close
    tries to put the unacked messages back through a new connection pool, which needs the
    client: AttributeError, "Unrecoverable error", and the worker exits instead of reconnecting.
    Without a client there is nothing to restore through: the messages stay in Redis's unacked
    set (and are gone anyway when Redis comes back empty); they expire by the next round, which
    enqueues those customers again."""

    def close(self):
        if self.connection is None or self.connection.client is None:
            self.do_restore = False
        super().close()

    @contextlib.contextmanager
    def conn_or_acquire(self, client=None):
        """kombu's, keeping its synchronous Redis client instead of building one per call
        (every published message and every acknowledgement): building it cost more than the
        LPUSH it sent, 30 % of a round's fan-out (py-spy). A redis.Redis takes a connection
        from its pool for each command, so it is safe to share; a new pool (after a
        reconnection) gets a new client."""
        if client:
            yield client
            return
        kept = getattr(self, "_kept_client", None)
        if kept is None or kept.connection_pool is not self.pool:
            kept = self._kept_client = self._create_client()
        yield kept


class RedisTransport(redis_transport.Transport):
    Channel = RedisChannel
