"""The admin key of a local stack: ``streamrec up`` makes one when none is configured.

The API refuses to start without an admin key (``STREAMREC_ADMIN_KEY``) unless
``STREAMREC_ALLOW_INSECURE=1``; a stack started with ``streamrec up`` gets a random key kept in
``<data dir>/admin_key`` (readable by its owner only), reused on the next ``up``. The key is
never printed or logged: its path is.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path

KEY_FILE = "admin_key"


def local_admin_key(data_dir: Path) -> tuple[str, Path]:
    """The stack's admin key and the file that holds it, made on first use."""
    path = Path(data_dir) / KEY_FILE
    if path.exists():
        key = path.read_text().strip()
        if key:
            return key, path
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return key, path
