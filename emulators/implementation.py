"""Which emulators run: Google's official ones or the project's own.

``official``: the Pub/Sub and Firestore emulators of the Google Cloud CLI (the ``pubsub-emulator`` and
``cloud-firestore-emulator`` components of the ``gcloud`` on PATH), run by the ``java`` on PATH.
``own``: the project's Pub/Sub emulator (emulators/pubsub, Python) and the npm Firestore emulator
(emulators/firestore/server.cjs, Node).

``NETRA_EMULATORS=official|own`` forces one; unset (or ``auto``) picks official whenever gcloud with both
components and Java are installed, own otherwise. Forcing ``official`` where it cannot run is an error that
says what is missing, never a silent fallback.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

ENV = "NETRA_EMULATORS"
OFFICIAL = "official"
OWN = "own"
KINDS = (OFFICIAL, OWN)


class ImplementationError(RuntimeError):
    """The requested implementation cannot run here (``code`` is stable, the message says what to do)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class OfficialParts:
    """What it takes to run Google's emulators without going through the gcloud wrapper."""

    java: Path
    sdk_root: Path
    pubsub_jar: Path
    firestore_jar: Path

    @property
    def pubsub_version(self) -> str:
        # cloud-pubsub-emulator-0.8.20-all.jar
        return self.pubsub_jar.name.removeprefix("cloud-pubsub-emulator-").removesuffix("-all.jar")

    @property
    def sdk_version(self) -> str:
        version = self.sdk_root / "VERSION"
        return version.read_text().strip() if version.is_file() else "?"


def _sdk_root() -> Path | None:
    gcloud = shutil.which("gcloud")
    # /usr/bin/gcloud -> /usr/lib/google-cloud-sdk/bin/gcloud; the components live in <root>/platform.
    return Path(gcloud).resolve().parent.parent if gcloud else None


def official_parts() -> tuple[OfficialParts | None, str | None]:
    """(parts, None) when Google's emulators can run here, else (None, what is missing)."""
    root = _sdk_root()
    if root is None:
        return None, "gcloud is not on PATH"
    java = shutil.which("java")
    if java is None:
        return None, "java is not on PATH (Google's emulators need a Java runtime)"
    pubsub = sorted((root / "platform" / "pubsub-emulator" / "lib").glob("cloud-pubsub-emulator-*-all.jar"))
    if not pubsub:
        return None, "gcloud's pubsub-emulator component is not installed (gcloud components install pubsub-emulator)"
    firestore = root / "platform" / "cloud-firestore-emulator" / "cloud-firestore-emulator.jar"
    if not firestore.is_file():
        return None, (
            "gcloud's cloud-firestore-emulator component is not installed "
            "(gcloud components install cloud-firestore-emulator)"
        )
    return OfficialParts(java=Path(java), sdk_root=root, pubsub_jar=pubsub[-1], firestore_jar=firestore), None


def require_official() -> OfficialParts:
    parts, missing = official_parts()
    if parts is None:
        raise ImplementationError("official_unavailable", f"Google's emulators cannot run here: {missing}")
    return parts


def requested() -> str:
    """``official``, ``own`` or ``auto`` from NETRA_EMULATORS (unset = auto); anything else is an error."""
    raw = os.environ.get(ENV, "").strip().lower()
    if raw in ("", "auto"):
        return "auto"
    if raw in KINDS:
        return raw
    raise ImplementationError("bad_setting", f"{ENV} must be official, own or auto (unset), got {raw!r}")


@dataclass(frozen=True)
class Choice:
    kind: str  # OFFICIAL or OWN
    why: str  # one line: how it was chosen

    def describe(self) -> str:
        if self.kind == OFFICIAL:
            parts = require_official()
            what = (
                f"Google's official emulators (gcloud {parts.sdk_version}: Pub/Sub emulator {parts.pubsub_version}, "
                f"Firestore emulator; java {parts.java})"
            )
        else:
            what = "the project's own emulators (Pub/Sub: emulators/pubsub, Firestore: npm emulators/firestore)"
        return f"{what}; {self.why}"


def choose() -> Choice:
    """The implementation to run, following NETRA_EMULATORS (see the module docstring)."""
    wanted = requested()
    if wanted == OWN:
        return Choice(OWN, f"{ENV}=own")
    parts, missing = official_parts()
    if wanted == OFFICIAL:
        if parts is None:
            raise ImplementationError("official_unavailable", f"{ENV}=official but {missing}")
        return Choice(OFFICIAL, f"{ENV}=official")
    if parts is None:
        return Choice(OWN, f"fallback: {missing} (set {ENV}=official|own to force one)")
    return Choice(OFFICIAL, f"gcloud with both emulator components and Java found ({ENV}=own forces the fallback)")


def resolve(kind: str | None) -> str:
    """``kind`` if given (official/own), else the choice for this environment."""
    if kind is None or kind == "auto":
        return choose().kind
    if kind not in KINDS:
        raise ImplementationError("bad_kind", f"emulator kind must be official, own or auto, got {kind!r}")
    return kind
