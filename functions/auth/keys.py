"""Where the signing keyset comes from, and the operator's rotation commands.

Sources, first configured wins: Secret Manager (TOKEN_KEYSET_SECRET; the latest version is re-read every
TOKEN_KEYSET_REFRESH_SECONDS, so a rotation needs no redeploy), the environment (TOKEN_SIGNING_KEYSET), or a
file generated once under .local/ for local runs (re-read when it changes).

    python -m functions.auth.keys generate            > keyset.json   # a new keyset with one key
    python -m functions.auth.keys rotate  < old.json  > new.json      # add a key that signs after the lead
    python -m functions.auth.keys prune   < old.json  > new.json      # drop keys no live token can need
    python -m functions.auth.keys jwks    < keyset.json                # the public keys it publishes
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.config import REPO_ROOT
from shared.tokens.keyset import (
    generate_keyset,
    jwks_from_keyset,
    parse_keyset,
    prune_keyset,
    rotate_keyset,
    signing_key,
)

if TYPE_CHECKING:
    from functions.auth.settings import AuthSettings


class KeysetSource:
    """The current keyset, parsed once per change; ``jwks()`` is cached with it."""

    def __init__(self, settings: AuthSettings) -> None:
        self.settings = settings
        self._reader: Any = None
        self._lock = threading.Lock()
        self._raw: str | None = None
        self._keyset: dict[str, Any] | None = None
        self._jwks: dict[str, Any] | None = None
        self._file_stamp: tuple[float, int] | None = None

    def local_path(self) -> Path:
        return Path(os.environ.get("NETRA_LOCAL_DIR", REPO_ROOT / ".local")) / "auth_keyset.json"

    def _read_raw(self) -> str:
        if self.settings.token_keyset_secret:
            if self._reader is None:
                from shared.secrets import RotatingSecretReader

                self._reader = RotatingSecretReader(
                    self.settings.token_keyset_secret, ttl_s=self.settings.token_keyset_refresh_seconds
                )
            return self._reader.get().reveal()
        if self.settings.token_signing_keyset:
            return self.settings.token_signing_keyset.get_secret_value()
        return self._read_local()

    def _read_local(self) -> str:
        path = self.local_path()
        try:
            stat = path.stat()
        except FileNotFoundError:
            self._create_local(path)
            stat = path.stat()
        stamp = (stat.st_mtime, stat.st_size)
        if stamp == self._file_stamp and self._raw is not None:
            return self._raw
        self._file_stamp = stamp
        return path.read_text()

    @staticmethod
    def _create_local(path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(generate_keyset()))
        os.chmod(tmp, 0o600)
        try:
            os.link(tmp, path)  # first writer wins when several instances start together
        except FileExistsError:
            pass
        finally:
            tmp.unlink()

    def get(self) -> dict[str, Any]:
        with self._lock:
            raw = self._read_raw()
            if raw != self._raw or self._keyset is None:
                keyset = parse_keyset(raw)
                self._jwks = jwks_from_keyset(keyset)
                self._keyset, self._raw = keyset, raw
            return self._keyset

    def jwks(self) -> dict[str, Any]:
        """Every key of the keyset (a rotated-in key is published before it signs)."""
        self.get()
        assert self._jwks is not None
        return self._jwks

    def signing_kid(self) -> str:
        return signing_key(self.get(), self.settings.token_key_publish_lead_seconds)["kid"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m functions.auth.keys", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["generate", "rotate", "prune", "jwks"])
    parser.add_argument("--access-ttl", type=float, default=900.0, help="access token lifetime, s (prune)")
    parser.add_argument("--publish-lead", type=float, default=120.0, help="publish lead, s (prune)")
    args = parser.parse_args(argv)
    if args.command == "generate":
        out: dict[str, Any] = generate_keyset()
    else:
        try:
            keyset = parse_keyset(sys.stdin.read())
        except ValueError as exc:
            print(f"invalid keyset on stdin: {exc}", file=sys.stderr)
            return 2
        if args.command == "rotate":
            out = rotate_keyset(keyset)
        elif args.command == "prune":
            out = prune_keyset(keyset, args.access_ttl, args.publish_lead)
        else:
            out = jwks_from_keyset(keyset)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
