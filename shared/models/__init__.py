"""Models of every message that crosses a process boundary (Pub/Sub, Firestore, WebSocket)."""
