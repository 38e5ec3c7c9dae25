"""Template filters for times as the dashboard shows them: "2 min ago" and the exact time."""

from django import template
from django.utils import timezone

from portals.queries import age_text, exact_time

register = template.Library()


@register.filter
def ago(moment):
    """ "just now", "45 s ago", "2 min ago", ... for a past datetime; "never" for None."""
    if not moment:
        return "never"
    return age_text(timezone.now() - moment)


@register.filter
def exact(moment):
    """The exact time with its zone, for a title attribute."""
    return exact_time(moment) if moment else ""
