"""Continuous usage ingestion: ingest keys, OTLP/HTTP traces and LiteLLM callbacks (docs/INGESTION.md)."""
