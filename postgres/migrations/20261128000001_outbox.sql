-- Millrace's transactional outbox and exactly-once effects (millrace-postgres).
-- Bookkept in the table millrace_migrations, apart from an application's own
-- sqlx migrations.

-- Jobs written inside the application's transactions, moved to Redis by the
-- relay. A committed row becomes exactly one job; a rolled-back row never
-- existed. Plain SQL may INSERT here too (queue, name, payload are enough).
CREATE TABLE millrace_outbox (
    id           bigserial   PRIMARY KEY,
    queue        text        NOT NULL,
    job_id       text        NOT NULL DEFAULT gen_random_uuid()::text,
    name         text        NOT NULL,
    payload      text        NOT NULL,
    max_attempts integer,
    trace        text,
    -- NULL: ready at once; else scheduled for this time.
    run_at       timestamptz,
    -- The INSERT's time (not the transaction's start): the job's enqueued_at.
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- Relay attempts that failed (a Redis error on the row's queue), the
    -- last error, and when the row may be tried again.
    attempts     integer     NOT NULL DEFAULT 0,
    last_error   text,
    retry_at     timestamptz,
    -- Set when the row can never be relayed (see last_error); the relay
    -- skips it, `millrace outbox status` lists it.
    dead_at      timestamptz,
    CONSTRAINT millrace_outbox_queue_name CHECK (
        octet_length(queue) BETWEEN 1 AND 128 AND queue !~ '[[:space:][:cntrl:]{}:]'),
    CONSTRAINT millrace_outbox_job_id CHECK (job_id <> ''),
    CONSTRAINT millrace_outbox_name CHECK (name <> ''),
    CONSTRAINT millrace_outbox_max_attempts CHECK (max_attempts BETWEEN 1 AND 10000),
    CONSTRAINT millrace_outbox_payload_size CHECK (octet_length(payload) <= 16777216)
);

CREATE INDEX millrace_outbox_dead ON millrace_outbox (id) WHERE dead_at IS NOT NULL;

-- Wake the relays at commit: one notification per transaction (Postgres
-- folds identical notifications of one transaction into one).
CREATE FUNCTION millrace_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('millrace_outbox', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER millrace_outbox_notify AFTER INSERT ON millrace_outbox
    FOR EACH STATEMENT EXECUTE FUNCTION millrace_outbox_notify();

-- Exactly-once effects: one row per job whose handler committed its writes
-- (in the same transaction as this row). Trimmed by age.
CREATE TABLE millrace_processed_jobs (
    queue        text        NOT NULL,
    job_id       text        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (queue, job_id)
);

CREATE INDEX millrace_processed_jobs_age ON millrace_processed_jobs (processed_at);
