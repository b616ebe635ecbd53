-- The tables of the design: users, identities, threads, messages, runs, usage records, cost ledger.
-- Event logs for replay live in Firestore (short-lived); runs keep the last sequence number here.

CREATE TABLE users (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email         text NOT NULL UNIQUE,
    name          text,
    permissions   text[] NOT NULL DEFAULT ARRAY['user'],
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_login_at timestamptz
);

-- One user per verified email; one identity per provider subject.
CREATE TABLE identities (
    provider   text NOT NULL,
    subject    text NOT NULL,
    user_id    uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    email      text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, subject)
);
CREATE INDEX identities_user ON identities(user_id);

CREATE TABLE threads (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id    uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    title      text NOT NULL DEFAULT 'New thread',
    metadata   jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX threads_user_updated ON threads(user_id, updated_at DESC, id DESC);

CREATE TABLE runs (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    thread_id        uuid NOT NULL REFERENCES threads(id) ON DELETE CASCADE,
    user_id          uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    message_id       uuid,
    status           text NOT NULL DEFAULT 'queued'
                     CHECK (status IN ('queued', 'running', 'completed', 'failed', 'cancelled')),
    attempt          integer NOT NULL DEFAULT 0,
    claimed_by       text,
    claimed_at       timestamptz,
    cancel_requested boolean NOT NULL DEFAULT false,
    last_seq         integer NOT NULL DEFAULT 0,
    error_code       text,
    error_message    text,
    input_tokens     bigint NOT NULL DEFAULT 0,
    cached_input_tokens bigint NOT NULL DEFAULT 0,
    cache_write_tokens  bigint NOT NULL DEFAULT 0,
    output_tokens    bigint NOT NULL DEFAULT 0,
    reasoning_tokens bigint NOT NULL DEFAULT 0,
    cost_usd         numeric(14, 6) NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    completed_at     timestamptz
);
CREATE INDEX runs_thread ON runs(thread_id, created_at);
CREATE INDEX runs_user ON runs(user_id, created_at);

CREATE TABLE messages (
    id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    thread_id         uuid NOT NULL REFERENCES threads(id) ON DELETE CASCADE,
    user_id           uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role              text NOT NULL CHECK (role IN ('user', 'assistant', 'system')),
    content           text NOT NULL,
    run_id            uuid REFERENCES runs(id) ON DELETE SET NULL,
    client_message_id text,
    metadata          jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX messages_thread ON messages(thread_id, created_at, id);
CREATE UNIQUE INDEX messages_client_id ON messages(user_id, client_message_id) WHERE client_message_id IS NOT NULL;
-- At most one assistant answer per run, whatever the redeliveries.
CREATE UNIQUE INDEX messages_one_answer_per_run ON messages(run_id) WHERE role = 'assistant';

CREATE TABLE usage_records (
    id                  bigserial PRIMARY KEY,
    user_id             uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    request_id          text NOT NULL,
    ts                  timestamptz NOT NULL,
    provider            text NOT NULL,
    model               text NOT NULL,
    input_tokens        bigint NOT NULL DEFAULT 0,
    cached_input_tokens bigint NOT NULL DEFAULT 0,
    cache_write_tokens  bigint NOT NULL DEFAULT 0,
    output_tokens       bigint NOT NULL DEFAULT 0,
    reasoning_tokens    bigint NOT NULL DEFAULT 0,
    latency_ms          integer,
    status              text NOT NULL DEFAULT 'ok',
    feature             text,
    end_user            text,
    prefix_hash         text,
    max_tokens          integer,
    interactive         boolean,
    upload_id           uuid,
    created_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, request_id)
);
CREATE INDEX usage_user_ts ON usage_records(user_id, ts);

-- One row per LLM call the platform itself made on a user's behalf.
CREATE TABLE cost_ledger (
    id                  bigserial PRIMARY KEY,
    user_id             uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    run_id              uuid REFERENCES runs(id) ON DELETE SET NULL,
    thread_id           uuid,
    provider            text NOT NULL,
    model               text NOT NULL,
    input_tokens        bigint NOT NULL DEFAULT 0,
    cached_input_tokens bigint NOT NULL DEFAULT 0,
    cache_write_tokens  bigint NOT NULL DEFAULT 0,
    output_tokens       bigint NOT NULL DEFAULT 0,
    reasoning_tokens    bigint NOT NULL DEFAULT 0,
    cost_usd            numeric(14, 8) NOT NULL DEFAULT 0,
    created_at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX cost_ledger_user_time ON cost_ledger(user_id, created_at);
