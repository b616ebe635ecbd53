"""Configuration of the ws_bridge Cloud Run service."""

from __future__ import annotations

from pydantic import Field

from shared.config import DatabaseSection, ServiceSettings, TokenVerifySection, dev_only_switch


class BridgeSettings(ServiceSettings, TokenVerifySection, DatabaseSection):
    heartbeat_interval_s: float = Field(25.0, gt=0, le=300, description="seconds between server pings, e.g. 25")
    max_frame_bytes: int = Field(65_536, ge=256, description="largest client frame in bytes")
    max_frames_per_minute: int = Field(120, ge=1, description="client frames allowed per connection per minute")
    max_connections_per_user: int = Field(20, ge=1, description="open sockets allowed per user")
    send_queue_size: int = Field(1000, ge=10, description="events buffered per connection before it is closed 1013")
    ws_allow_query_token: bool = dev_only_switch("true to accept ?token= on /ws (development only)")
    agent_api_url: str | None = Field(None, description="base URL of the agent API; locally from discovery")
    auth_url: str | None = Field(None, description="base URL of auth (ticket redemption); locally from discovery")
    subscription_ttl_seconds: int = Field(
        86_400, ge=86_400, description="expiration TTL of the per-instance subscription"
    )
