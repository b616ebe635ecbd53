"""The agent REST API: threads, messages, runs, events and costs. ``app.build_router`` assembles it."""
