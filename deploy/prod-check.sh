#!/usr/bin/env bash
# Django's deployment check with the production settings (SEC-01): exits non-zero on any
# warning. `make prod-check` runs it with production-like example values; on a server, give it
# the real environment file:  deploy/prod-check.sh /etc/msp-dashboard/env
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
if [ $# -ge 1 ]; then
  set -a
  # shellcheck disable=SC1090
  . "$1"
  set +a
else
  SECRET_KEY="$("$PY" -c 'import secrets; print(secrets.token_urlsafe(64))')"
  FIELD_ENCRYPTION_KEYS="$("$PY" -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')"
  VAR_DIR="$(mktemp -d)"
  trap 'rm -rf "$VAR_DIR"' EXIT
  export SECRET_KEY FIELD_ENCRYPTION_KEYS VAR_DIR
  export DEBUG=0 DEMO=0 HTTPS=1 BEHIND_PROXY=1
  export ALLOWED_HOSTS=noc.example.com CSRF_TRUSTED_ORIGINS=https://noc.example.com
  export DATABASE_URL=postgres://msp:example@10.0.0.5:5432/msp  # pragma: allowlist secret
  export REDIS_URL=redis://:example@10.0.0.6:6379/0  # pragma: allowlist secret
fi
export PRODUCTION=1 DJANGO_SETTINGS_MODULE=msp_dashboard.settings
"$PY" manage.py check --deploy --fail-level WARNING
