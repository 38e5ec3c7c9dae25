"""Users with a role (issue 6), for any test that needs one (imported by name; no tests)."""

from django.contrib.auth import get_user_model

from portals.accounts import ADMIN, OPERATOR, TOKEN_MANAGER, VIEWER, user_set_role

ROLE_NAMES = (VIEWER, OPERATOR, TOKEN_MANAGER, ADMIN)
PASSWORD = "a-long-test-pass-123"


def make_user(username: str, role: str | None = None, **fields):
    """A user holding `role` (Viewer, Operator, Token manager, Admin) or none."""
    user = get_user_model().objects.create_user(username, password=PASSWORD, **fields)
    if role is not None:
        user_set_role(user=user, role=role)
    return user
