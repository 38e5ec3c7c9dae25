"""`make run`: the whole dashboard on one machine, under honcho.

Migrates, sets the demo admin's password (generated and printed unless DEMO_ADMIN_PASSWORD is
set), then starts the Procfile: the bundled Site24x7 simulator (unless .env holds real
credentials), the web server, a Celery worker and Celery beat. Ctrl-C stops everything."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
REAL_CREDENTIAL_VARS = ("SITE24X7_MSP_AUTHTOKEN", "SITE24X7_REFRESH_TOKEN", "SITE24X7_CLIENT_ID")


def read_dotenv() -> dict[str, str]:
    path = ROOT / ".env"
    if not path.exists():
        return {}
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip().strip("'\"")
    return values


def demo_environment() -> tuple[dict[str, str], bool]:
    env = dict(os.environ)
    dotenv = read_dotenv()
    real = any(env.get(k) or dotenv.get(k) for k in REAL_CREDENTIAL_VARS)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("PORT", "8000")
    env.setdefault("SIMULATOR_PORT", "8924")
    env.setdefault("DEMO_CUSTOMERS", "40")
    env.setdefault("DEMO_SEED", "1")
    env.setdefault("REFRESH_CONCURRENCY", "16")
    if "REFRESH_INTERVAL" not in dotenv:
        env.setdefault("REFRESH_INTERVAL", "30")
    # honcho sets PORT per process (base + 100 per line), so the web port travels as WEB_PORT.
    env["WEB_PORT"] = env["PORT"]
    env.setdefault("VAR_DIR", str(ROOT / "var"))
    env["DEMO"] = "1"
    if not real:
        sim = f"http://127.0.0.1:{env['SIMULATOR_PORT']}"
        env["SITE24X7_API_URL"] = sim
        env["SITE24X7_ACCOUNTS_URL"] = sim
        env["DEMO_SIMULATOR_URL"] = sim
    return env, real


def manage(env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True)


def main() -> int:
    env, real = demo_environment()
    if not env.get("DEMO_ADMIN_PASSWORD"):
        env["DEMO_ADMIN_PASSWORD"] = secrets.token_urlsafe(12)
    manage(env, "migrate", "--no-input", "-v", "0")
    manage(env, "demo_admin")
    processes = ["web", "worker", "beat"] if real else []
    print(
        "Starting "
        + ("against the real Site24x7 (credentials from .env)" if real else "with the simulator")
        + f"; the dashboard will be at http://127.0.0.1:{env['PORT']}/",
        flush=True,
    )
    honcho = [str(VENV_BIN / "honcho"), "start", "-f", "Procfile", *processes]
    try:
        return subprocess.call(honcho, cwd=ROOT, env=env)
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
