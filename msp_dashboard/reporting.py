"""Error reports that never show a secret (SEC-09), with DEBUG on or off.

Django's SafeExceptionReporterFilter only works while DEBUG is False, and only hides what a
view or function marked (`sensitive_variables`, `sensitive_post_parameters`). The technical
500 page of a developer's DEBUG=True and the mail to ADMINS both render every frame's local
variables, and the Site24x7 client (no Django) and requests/urllib3 hold the token in theirs
(arguments, headers). This filter is always active and, on top of Django's rules, hides:
- every local variable of frames in the client, the HTTP stack and the crypto code;
- everywhere, any variable or POST field whose name speaks of a token, secret, password, key,
  header, cookie or authorization;
- settings and request metadata matching the same words (Django's list plus AUTH, COOKIE and
  the URLs that carry passwords)."""

import re

from django.views.debug import SafeExceptionReporterFilter

OPAQUE_MODULES = (
    "msp_dashboard.site24x7",
    "tokens.crypto",
    "requests",
    "urllib3",
    "http.client",
    "ssl",
    "socket",
    "cryptography",
    "kombu",
    "redis",
)
SENSITIVE_NAME = re.compile(
    r"token|secret|passw|key|auth|cookie|header|credential|grant|signature", re.IGNORECASE
)


class SecretSafeExceptionReporterFilter(SafeExceptionReporterFilter):
    hidden_settings = re.compile(
        "API|TOKEN|KEY|SECRET|PASS|SIGNATURE|AUTH|COOKIE|DATABASE_URL|REDIS_URL|BROKER|EMAIL_URL",
        flags=re.IGNORECASE,
    )

    def is_active(self, request):
        return True  # also with DEBUG=True: the technical 500 page is a page too

    def get_post_parameters(self, request):
        """Django's rules (sensitive_post_parameters), then every field named like a secret,
        whichever view received it."""
        params = super().get_post_parameters(request)
        if not params:
            return params
        cleansed = params.copy()
        for name in cleansed:
            if SENSITIVE_NAME.search(name):
                cleansed[name] = self.cleansed_substitute
        return cleansed

    def get_traceback_frame_variables(self, request, tb_frame):
        variables = super().get_traceback_frame_variables(request, tb_frame)
        module = str(tb_frame.f_globals.get("__name__", ""))
        if module.startswith(OPAQUE_MODULES):
            return [(name, self.cleansed_substitute) for name, _ in variables]
        return [
            (name, self.cleansed_substitute if SENSITIVE_NAME.search(name) else value)
            for name, value in variables
        ]
