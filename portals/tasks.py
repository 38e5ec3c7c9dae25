"""Celery tasks: thin, idempotent, ids only (SEC-10); each calls one service.

`refresh_due` runs on beat every REFRESH_INTERVAL (expires at the next round); it enqueues
`refresh_customer(id)` per due customer. Celery's retry is the one retry layer: the service
says when (`retry_in`: full-jitter back-off, never shorter than Retry-After), the task retries.
Time limits: settings.TASK_SOFT_TIME_LIMIT / TASK_TIME_LIMIT (prefork pool; the thread pool of
the demo relies on the client's read timeout instead)."""

from celery import shared_task
from django.conf import settings

from .services import (
    BATCH_MAX,
    customer_refresh,
    customers_enqueue_due,
    customers_refresh_batch,
    customers_sync_all,
)
from .wide import WIDE_TIME_FACTOR, customers_refresh_wide


@shared_task(name="portals.tasks.refresh_due", ignore_result=True)
def refresh_due() -> int:
    return customers_enqueue_due()


@shared_task(
    bind=True,
    name="portals.tasks.refresh_customer",
    ignore_result=True,
    soft_time_limit=settings.TASK_SOFT_TIME_LIMIT,
    time_limit=settings.TASK_TIME_LIMIT,
)
def refresh_customer(self, customer_id: int, manual: bool = False, first_attempt: int = 0) -> str:
    """`first_attempt`: attempts made before this task (1 for a retry handed over by a batch)."""
    outcome = customer_refresh(
        customer_id=int(customer_id), attempt=first_attempt + self.request.retries, manual=manual
    )
    if outcome.retry_in is not None:
        raise self.retry(
            countdown=outcome.retry_in, max_retries=settings.REFRESH_MAX_RETRIES - first_attempt
        )
    return outcome.result


@shared_task(
    name="portals.tasks.refresh_batch",
    ignore_result=True,
    soft_time_limit=settings.TASK_SOFT_TIME_LIMIT * BATCH_MAX,
    time_limit=settings.TASK_TIME_LIMIT * BATCH_MAX,
)
def refresh_batch(customer_ids: list[int]) -> list[str]:
    """Several customers of one round (REFRESH_BATCH_SIZE): fewer messages for a large MSP.
    Each customer has its own lease, call and retry; the batch stores them in one transaction."""
    outcomes = customers_refresh_batch(customer_ids=[int(pk) for pk in customer_ids])
    return [outcome.result for outcome in outcomes]


@shared_task(
    bind=True,
    name="portals.tasks.refresh_wide",
    ignore_result=True,
    soft_time_limit=settings.TASK_SOFT_TIME_LIMIT * WIDE_TIME_FACTOR,
    time_limit=settings.TASK_TIME_LIMIT * WIDE_TIME_FACTOR,
)
def refresh_wide(self, credential_id: int, round_id: str) -> str:
    """Every OAuth customer of one MSP identity with one MSP-wide call (portals.wide)."""
    outcome = customers_refresh_wide(
        credential_id=int(credential_id), round_id=str(round_id), attempt=self.request.retries
    )
    if outcome.retry_in is not None:
        raise self.retry(countdown=outcome.retry_in, max_retries=settings.REFRESH_MAX_RETRIES)
    return outcome.result


@shared_task(name="portals.tasks.sync_customers", ignore_result=True)
def sync_customers() -> list[str]:
    return [
        f"{r.credential_id}: {r.result if r.result else 'failed: ' + r.error}"
        for r in customers_sync_all()
    ]


@shared_task(name="portals.tasks.heartbeat", ignore_result=True)
def heartbeat() -> str:
    """Every BEAT_HEARTBEAT_INTERVAL (issue 6): proves beat, broker and a worker to /healthz."""
    from .health import heartbeat_record

    return heartbeat_record().isoformat()
