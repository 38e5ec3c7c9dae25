#!/usr/bin/env bash
# detect-secrets over every file git would commit (tracked and new, not ignored), tests/ aside
# (their credentials are synthetic by construction: canaries, fixed throwaway passwords).
# Audited false positives live in .secrets.baseline; mark a new one with an inline
# `pragma: allowlist secret` comment, or refresh the baseline:  bin/secrets-scan.sh --update
# Findings are compared by file and hashed secret, not line number, so editing a file that
# holds an audited false positive does not fail the gate.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${BIN:-.venv/bin}"
mapfile -t files < <(git ls-files --cached --others --exclude-standard | grep -vE '^(tests/|var/|\.secrets\.baseline$)' \
  | while read -r f; do [ -f "$f" ] && echo "$f"; done)
if [ "${1:-}" = "--update" ]; then
  "$BIN/detect-secrets" scan --baseline .secrets.baseline "${files[@]}"
  exit 0
fi
mkdir -p var
"$BIN/detect-secrets" scan "${files[@]}" > var/secrets-scan.json
"$BIN/python" - <<'PY'
import json
import sys

def findings(path):
    with open(path) as f:
        results = json.load(f)["results"]
    return {(name, s["hashed_secret"]): s["line_number"] for name, items in results.items() for s in items}

known = findings(".secrets.baseline")
now = findings("var/secrets-scan.json")
new = sorted(set(now) - set(known))
for name, _ in new:
    print(f"possible secret: {name}:{now[(name, _)]}")
if new:
    sys.exit("detect-secrets: new findings; remove them or audit them into .secrets.baseline")
PY
echo "detect-secrets: no new secret in ${#files[@]} files"
