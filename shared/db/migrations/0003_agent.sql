-- Agent platform: what the cost report and the worker need beyond 0001.

-- Which step of a run made the call, how long it took and how many attempts it needed (retries).
ALTER TABLE cost_ledger
    ADD COLUMN purpose       text,
    ADD COLUMN latency_ms    integer,
    ADD COLUMN call_attempts integer NOT NULL DEFAULT 1;
-- The completion transaction sums a run's calls.
CREATE INDEX cost_ledger_run ON cost_ledger(run_id);

-- Runs that are not finished yet, oldest first: the stale-run check and operators' queries.
CREATE INDEX runs_active ON runs(created_at) WHERE status IN ('queued', 'running');

-- A run's cost is the sum of its ledger rows: keep the ledger's precision so the two always agree.
ALTER TABLE runs ALTER COLUMN cost_usd TYPE numeric(14, 8);
