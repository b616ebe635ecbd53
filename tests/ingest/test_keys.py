"""Ingest keys over real HTTP on a real PostgreSQL: shown once, stored hashed, revocable by their owner only,
last-used time visible, status per source."""

from __future__ import annotations

import hashlib

import httpx

from tests.ingest.conftest import IngestServer
from tests.ingest.otlp_payloads import chat_attrs, request, span


def test_a_key_is_shown_once_and_stored_hashed(ingest: IngestServer) -> None:
    user = ingest.user()
    with ingest.client(user) as client:
        created = client.post("/api/ingest/keys", json={"name": "prod collector"})
        assert created.status_code == 201
        key = created.json()["key"]
        assert key.startswith("nik_") and len(key) > 40
        assert created.json()["prefix"] == key[:12]
        listed = client.get("/api/ingest/keys").json()["keys"]
    assert [k["name"] for k in listed] == ["prod collector"]
    assert "key" not in listed[0] and listed[0]["active"] is True and listed[0]["last_used_at"] is None
    row = ingest.db.one("SELECT key_hash, prefix FROM ingest_keys WHERE user_id = %s", [user])
    assert row["key_hash"] == hashlib.sha256(key.encode()).hexdigest()
    assert key not in str(row.values()).replace(row["prefix"], "")


def test_last_used_time_and_status_per_source(ingest: IngestServer) -> None:
    user = ingest.user()
    key = ingest.new_key(user)
    body = request([span(chat_attrs()), span({"http.route": "/x"})]).SerializeToString()
    response = httpx.post(
        f"{ingest.url}/v1/traces",
        content=body,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/x-protobuf"},
        trust_env=False,
    )
    assert response.status_code == 200
    with ingest.client(user) as client:
        status = client.get("/api/ingest/status").json()
    assert status["keys"][0]["last_used_at"] is not None
    otlp = next(s for s in status["sources"] if s["source"] == "otlp")
    assert (otlp["records"], otlp["ignored"]) == (1, 1)
    assert otlp["last_record_ts"].startswith("2025-11-24T16:00:00")
    assert status["last_ingested_at"] == otlp["last_ingested_at"] is not None


def test_only_the_owner_revokes_and_bad_input_is_refused(ingest: IngestServer) -> None:
    owner, other = ingest.user(), ingest.user()
    ingest.new_key(owner)
    with ingest.client(owner) as client:
        key_id = client.get("/api/ingest/keys").json()["keys"][0]["id"]
    with ingest.client(other) as client:
        assert client.delete(f"/api/ingest/keys/{key_id}").status_code == 404
        assert client.get("/api/ingest/keys").json()["keys"] == []
        assert client.delete("/api/ingest/keys/not-a-uuid").status_code == 404
        assert client.post("/api/ingest/keys", json={}).status_code == 422
        assert client.post("/api/ingest/keys", json={"name": "x", "feature_attribute": "a b"}).status_code == 422
    with ingest.client(owner) as client:
        first = client.delete(f"/api/ingest/keys/{key_id}").json()
        again = client.delete(f"/api/ingest/keys/{key_id}").json()
    assert first["active"] is False and again["revoked_at"] == first["revoked_at"]


def test_key_routes_need_a_signed_in_user(ingest: IngestServer) -> None:
    user = ingest.user()
    key = ingest.new_key(user)
    # an ingest key is no access token: the key routes refuse it
    response = httpx.get(f"{ingest.url}/api/ingest/keys", headers={"Authorization": f"Bearer {key}"}, trust_env=False)
    assert response.status_code == 401
