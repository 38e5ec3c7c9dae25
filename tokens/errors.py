"""Typed errors of the credential services.

`str(exc)` is a short, human message that says what happened and what to do next; it never
holds a secret, so a view may show it as it is. `code` lets a view react (e.g. offer "forget"
after `unknown-token`)."""


class CredentialError(Exception):
    """A credential action did not happen (or not completely); nothing secret in the message."""

    def __init__(self, message: str, *, code: str = "error") -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    def __str__(self) -> str:
        return self.message


# Codes a view may branch on.
CAP = "cap"  # the local count of live authtokens is at the Site24x7 maximum
UPSTREAM_CAP = "upstream-cap"  # Site24x7 refused: the account already has the maximum
LOGIN = "login"  # wrong email/password/portal
UNKNOWN_TOKEN = "unknown-token"  # noqa: S105 - Site24x7 does not know the token (forget is allowed)
REJECTED = "rejected"  # Site24x7 refused the credential (invalid, revoked, expired)
THROTTLED = "throttled"
UNREACHABLE = "unreachable"  # timeouts, connection errors, 5xx
UPSTREAM = "upstream"  # an unexpected answer
DUPLICATE = "duplicate"
STATE = "state"  # the credential is not in a state that allows the action
BUSY = "busy"  # another action on the same object is in progress
UNUSABLE = "unusable"  # the stored secret cannot be decrypted with the configured keys
