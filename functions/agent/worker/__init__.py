"""The agent worker: takes a run request from Pub/Sub, claims the run, executes the pipeline, emits events."""
