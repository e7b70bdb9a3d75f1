-- The simulated market's returns and exchanges: one row per commitment given back or
-- exchanged away, keyed by the commitment so that it can leave the inventory only once, and
-- carrying the proposal's idempotency key so that reconciliation after a crash finds it.
CREATE TABLE sim_retired (
    commitment_id   TEXT   PRIMARY KEY,
    idempotency_key TEXT   NOT NULL,
    operation       TEXT   NOT NULL,
    request_id      TEXT   NOT NULL,
    retired_at_ms   BIGINT NOT NULL
);
CREATE INDEX sim_retired_key ON sim_retired (idempotency_key);
