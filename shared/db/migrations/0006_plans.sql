-- Plans (docs/AUTH.md, Plans): each user has one; the agent API enforces its limits (runs per minute,
-- concurrent runs, usage rows stored, monthly LLM spend). An operator sets it with
-- `python -m functions.auth.admin set-plan EMAIL PLAN`; plan_changed_at records when.
ALTER TABLE users
    ADD COLUMN plan text NOT NULL DEFAULT 'free' CHECK (plan IN ('free', 'early', 'mid', 'enterprise')),
    ADD COLUMN plan_changed_at timestamptz;

-- The concurrent-runs check counts a user's unfinished runs at every post.
CREATE INDEX runs_user_active ON runs (user_id, created_at) WHERE status IN ('queued', 'running');
