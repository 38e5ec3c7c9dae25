#!/usr/bin/env bash
# detect-secrets over every file git would commit (tracked and new, not ignored), tests/ aside
# (their credentials are synthetic by construction: canaries, fixed throwaway passwords).
# Audited false positives live in .secrets.baseline; mark a new one with an inline
# `pragma: allowlist secret` comment, or refresh the baseline:  bin/secrets-scan.sh --update
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${BIN:-.venv/bin}"
mapfile -t files < <(git ls-files --cached --others --exclude-standard | grep -vE '^(tests|var)/' \
  | while read -r f; do [ -f "$f" ] && echo "$f"; done)
if [ "${1:-}" = "--update" ]; then
  "$BIN/detect-secrets" scan --baseline .secrets.baseline "${files[@]}"
  exit 0
fi
"$BIN/detect-secrets-hook" --baseline .secrets.baseline "${files[@]}"
echo "detect-secrets: no new secret in ${#files[@]} files"
