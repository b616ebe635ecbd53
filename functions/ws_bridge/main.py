"""ws_bridge: the authenticated WebSocket endpoint of the platform (Cloud Run service, ASGI ``app``).

Run with ``python -m functions.ws_bridge --port N``. The app is built by functions/ws_bridge/app.py
(create_app); this module holds only what the server looks up. Protocol: docs/WEBSOCKET.md.
"""

from __future__ import annotations

from functions.ws_bridge.app import create_app
from functions.ws_bridge.settings import BridgeSettings
from shared.config import load_settings

app = create_app(load_settings(BridgeSettings))
