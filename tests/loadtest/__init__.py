"""Cold-start load tests (issue 9): `python -m tests.loadtest` (what `make loadtest` runs).

Scenarios: 1 scale from zero, 2 cold stack, 3 WebSocket storm, 4 steady load, 5 remote mode. Every scenario
also runs the empty function the same way, so cold-start figures are ratios to a floor measured in the same run.
"""
