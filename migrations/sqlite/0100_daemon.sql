-- The daemon's tables: proposals and their approvals, API tokens, the executor lease and the
-- simulated provider's ledger (see docs/operations.md). Times are integer milliseconds since
-- the Unix epoch (UTC) so that comparisons are the same SQL on SQLite and PostgreSQL; money is
-- integer micro-dollars, never a float.

CREATE TABLE proposals (
    id                       TEXT    PRIMARY KEY,
    plan_id                  TEXT    NOT NULL,
    created_at_ms            BIGINT  NOT NULL,
    expires_at_ms            BIGINT  NOT NULL,
    updated_at_ms            BIGINT  NOT NULL,
    state                    TEXT    NOT NULL CHECK (state IN ('proposed', 'approved', 'rejected', 'expired', 'executing', 'executed', 'failed')),
    proposer                 TEXT    NOT NULL,
    approvals_needed         BIGINT  NOT NULL CHECK (approvals_needed BETWEEN 1 AND 2),
    policy                   TEXT    NOT NULL,
    provider                 TEXT    NOT NULL,
    instrument               TEXT    NOT NULL,
    hourly_commitment_micros BIGINT  NOT NULL,
    upfront_micros           BIGINT  NOT NULL,
    expected_savings_micros  BIGINT  NOT NULL,
    -- The purchase as JSON (providers::PurchaseSpec + plan facts), exactly as proposed.
    action                   TEXT    NOT NULL,
    summary                  TEXT    NOT NULL,
    -- Set, with requested_at_ms, in the same statement that moves the proposal to 'executing',
    -- before any provider call.
    idempotency_key          TEXT    UNIQUE,
    requested_at_ms          BIGINT,
    commitment_id            TEXT,
    provider_request_id      TEXT,
    -- Why it was rejected, expired or failed.
    outcome                  TEXT
);
CREATE INDEX proposals_state ON proposals (state, created_at_ms);
CREATE INDEX proposals_requested ON proposals (requested_at_ms);

CREATE TABLE proposal_decisions (
    proposal_id   TEXT   NOT NULL REFERENCES proposals (id),
    actor         TEXT   NOT NULL,
    decision      TEXT   NOT NULL CHECK (decision IN ('approve', 'reject')),
    decided_at_ms BIGINT NOT NULL,
    reason        TEXT,
    -- One decision per person per proposal: "two distinct approvers" is this key.
    PRIMARY KEY (proposal_id, actor)
);

CREATE TABLE api_tokens (
    name          TEXT   PRIMARY KEY,
    -- SHA-256 of the token, hex; the token itself is shown once and never stored.
    token_sha256  TEXT   NOT NULL UNIQUE CHECK (length(token_sha256) = 64),
    role          TEXT   NOT NULL CHECK (role IN ('viewer', 'approver', 'admin')),
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE leases (
    name          TEXT   PRIMARY KEY,
    holder        TEXT   NOT NULL,
    expires_at_ms BIGINT NOT NULL
);

CREATE TABLE sim_commitments (
    id              TEXT   PRIMARY KEY,
    idempotency_key TEXT   NOT NULL UNIQUE,
    request_id      TEXT   NOT NULL,
    -- The whole domain::Commitment as JSON; the columns beside it are for people and queries.
    commitment      TEXT   NOT NULL,
    provider        TEXT   NOT NULL,
    instrument      TEXT   NOT NULL,
    hourly_cost_micros BIGINT NOT NULL,
    upfront_micros  BIGINT NOT NULL,
    purchased_at_ms BIGINT NOT NULL
);
