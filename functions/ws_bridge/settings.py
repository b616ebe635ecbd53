"""Configuration of the ws_bridge Cloud Run service (env var = field name upper-cased)."""

from __future__ import annotations

from pydantic import Field

from shared.config import CommonSection, DatabaseSection, TokenVerifySection, dev_only_switch


class BridgeSettings(CommonSection, TokenVerifySection, DatabaseSection):
    heartbeat_interval_s: float = Field(
        25.0, gt=0, le=300, description="seconds between server pings; a missed pong closes after another interval"
    )
    max_frame_bytes: int = Field(
        65_536, ge=256, description="largest client frame in bytes (error frame_too_large; 4x closes with 1009)"
    )
    max_frames_per_minute: int = Field(120, ge=1, description="client frames allowed per connection per minute")
    max_connections_per_user: int = Field(
        20, ge=1, description="open sockets allowed per user on one instance (error too_many_connections)"
    )
    max_connections: int | None = Field(
        None, ge=1, description="open sockets allowed per instance; default: what the file descriptor limit allows"
    )
    send_queue_size: int = Field(
        1000, ge=10, description="frames buffered per connection before it is closed with 1013 (slow consumer)"
    )
    replay_buffer_size: int = Field(
        500,
        ge=10,
        description="live events held per subscription while it replays; beyond, they are re-read from the log",
    )
    close_timeout_s: float = Field(
        10.0,
        gt=0,
        le=60,
        description="seconds a close frame may wait for a peer that does not read, before the socket is aborted",
    )
    ticket_connection_ttl_s: int = Field(
        900, ge=60, description="seconds a connection opened with a ticket lives before an `auth` frame is needed"
    )
    ws_allow_query_token: bool = dev_only_switch("true to accept ?token= on /ws (development only)")
    agent_api_url: str | None = Field(
        None, description="base URL of the agent API, e.g. https://agent-api-xyz.run.app; locally from discovery"
    )
    auth_url: str | None = Field(
        None, description="base URL of auth for ticket redemption; default: AUTH_JWKS_URL's origin, else discovery"
    )
    subscription_ttl_seconds: int = Field(
        86_400, ge=86_400, description="expiration TTL of the per-instance agent-events subscription (>= 1 day)"
    )
    replay_page_size: int = Field(500, ge=10, le=5000, description="events read from the event log per query")
