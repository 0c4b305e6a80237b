"""Write .env from .env.example with a fresh random value for every empty setting.

    python3 compose/make_env.py [TARGET]     # default: .env next to docker-compose.yml

Refuses to overwrite an existing file. Values are URL-safe, since they end up in database URLs.
"""

import base64
import os
import secrets
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def value_for(key: str) -> str:
    if key == "AIRFLOW_FERNET_KEY":  # Fernet wants the URL-safe base64 of 32 random bytes
        return base64.urlsafe_b64encode(os.urandom(32)).decode()
    return secrets.token_hex(24)


def main() -> int:
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / ".env"
    if target.exists():
        print(f"error: {target} exists; edit it, or delete it to generate a new one", file=sys.stderr)
        return 1
    lines = []
    for line in (ROOT / ".env.example").read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#") and not value.strip():
            line = f"{key}={value_for(key)}"
        lines.append(line)
    # Created private: it holds every password of the stack.
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("\n".join(lines) + "\n")
    print(f"wrote {target}; the Airflow login is in AIRFLOW_ADMIN_USER / AIRFLOW_ADMIN_PASSWORD")
    return 0


if __name__ == "__main__":
    sys.exit(main())
