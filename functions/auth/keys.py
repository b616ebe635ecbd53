"""Where the signing keyset comes from: Secret Manager (cloud, rotates without redeploy), the environment,
or a file generated once under .local/ for local runs."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from functions.auth.settings import AuthSettings
from shared.config import REPO_ROOT
from shared.tokens import generate_keyset, parse_keyset


class KeysetSource:
    def __init__(self, settings: AuthSettings) -> None:
        self.settings = settings
        self._reader: Any = None
        self._lock = threading.Lock()

    def local_path(self) -> Path:
        return Path(os.environ.get("NETRA_LOCAL_DIR", REPO_ROOT / ".local")) / "auth_keyset.json"

    def get(self) -> dict[str, Any]:
        if self.settings.token_keyset_secret:
            with self._lock:
                if self._reader is None:
                    from shared.secrets import RotatingSecretReader

                    self._reader = RotatingSecretReader(self.settings.token_keyset_secret, ttl_s=60)
            return parse_keyset(self._reader.get().reveal())
        if self.settings.token_signing_keyset:
            return parse_keyset(self.settings.token_signing_keyset.get_secret_value())
        return self._local()

    def _local(self) -> dict[str, Any]:
        path = self.local_path()
        with self._lock:
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_text(json.dumps(generate_keyset()))
                os.chmod(tmp, 0o600)
                try:
                    os.link(tmp, path)  # first writer wins when several instances start together
                except FileExistsError:
                    pass
                tmp.unlink()
            return parse_keyset(path.read_text())
