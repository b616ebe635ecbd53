"""What every part of one bridge instance shares."""

from __future__ import annotations

from dataclasses import dataclass

from functions.ws_bridge.hub import Hub
from functions.ws_bridge.settings import BridgeSettings
from shared.startup import StartupManager
from shared.tokens.verify import TokenVerifier


@dataclass
class Bridge:
    settings: BridgeSettings
    manager: StartupManager
    hub: Hub
    verifier: TokenVerifier
