"""What every part of one bridge instance shares (the ws_bridge's context, like AuthContext and AgentContext)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from functions.ws_bridge.hub import Hub
from functions.ws_bridge.limits import FdLimit
from functions.ws_bridge.settings import BridgeSettings
from shared.startup import StartupManager
from shared.tokens.verify import TokenVerifier


@dataclass
class BridgeContext:
    settings: BridgeSettings
    manager: StartupManager
    hub: Hub
    verifier: TokenVerifier
    fd_limit: FdLimit | None = None  # raised in the lifespan, before the first connection
    shutdown: asyncio.Task[None] | None = field(default=None, repr=False)  # see app.begin_shutdown
