"""Celery tasks of the alerts: thin, ids only (a webhook URL never travels through the
broker), each calling one service.

`deliver(delivery_id)`: one attempt; Celery's retry is the one retry layer (the service says
when: full-jitter back-off, never sooner than Retry-After), up to ALERT_MAX_ATTEMPTS in all.
`sweep`: every minute on beat (expiries, incidents, lost deliveries, pruning)."""

from celery import shared_task
from django.conf import settings

from .services import alerts_sweep, delivery_attempt


@shared_task(
    bind=True,
    name="alerts.tasks.deliver",
    ignore_result=True,
    soft_time_limit=30,
    time_limit=45,
)
def deliver(self, delivery_id: int) -> str:
    outcome = delivery_attempt(delivery_id=int(delivery_id))
    if outcome.retry_in is not None:
        raise self.retry(countdown=outcome.retry_in, max_retries=settings.ALERT_MAX_ATTEMPTS)
    return outcome.state


@shared_task(name="alerts.tasks.sweep", ignore_result=True)
def sweep() -> str:
    return str(alerts_sweep())
