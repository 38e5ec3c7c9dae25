"""The Celery app, configured from Django settings (CELERY_* names)."""

import os
import time
import uuid
from queue import Empty

from celery import Celery
from kombu.transport import filesystem
from kombu.utils.json import dumps, loads

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "msp_dashboard.settings")

app = Celery("msp_dashboard")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


class FilesystemChannel(filesystem.Channel):
    """kombu's filesystem transport (the demo's broker, no server to run), made safe for more
    than one process: a message file appears under its final name only once it is complete
    (kombu writes in place, so a worker polling at that moment reads an empty file and stops
    with JSONDecodeError), and a consumer claims a message by renaming it within the broker
    folder, atomic on one filesystem (kombu moves it to /tmp, a copy when /tmp is another
    filesystem, so two workers could both take it). The exchange table has the same race when
    two processes declare the first binding at once: an empty table is read again."""

    def get_table(self, exchange):
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
