-- Money safety (docs/operations.md, "Exactly once"):
-- * proposals gain the `needs_review` state: a provider call whose outcome could not be
--   established is parked for a person, never retried automatically;
-- * `action_digest`: the SHA-256 of the exact action (operation, spec, price) as proposed; every
--   approval names the digest it approved, and execution refuses an action that no longer
--   matches;
-- * `given_up_hourly_micros`: what a return, a sale or an exchange stops paying per hour, so
--   that policy caps apply to giving up as they do to buying;
-- * `attempts`, `first_call_at_ms`, `call_started_at_ms`: every provider call is recorded
--   before it is made; a call whose outcome is not recorded is reconciled at the provider
--   before anything else happens;
-- * `leases.token`: the fencing token, bumped whenever the lease changes hands, checked in the
--   transaction that records each provider call.
-- SQLite cannot change a CHECK constraint in place, so proposals (and the table that references
-- it) are rebuilt, children first, which also works with foreign keys on.

CREATE TABLE proposals_new (
    id                       TEXT    PRIMARY KEY,
    plan_id                  TEXT    NOT NULL,
    created_at_ms            BIGINT  NOT NULL,
    expires_at_ms            BIGINT  NOT NULL,
    updated_at_ms            BIGINT  NOT NULL,
    state                    TEXT    NOT NULL CHECK (state IN ('proposed', 'approved', 'rejected', 'expired', 'executing', 'executed', 'failed', 'needs_review')),
    proposer                 TEXT    NOT NULL,
    approvals_needed         BIGINT  NOT NULL CHECK (approvals_needed BETWEEN 1 AND 2),
    policy                   TEXT    NOT NULL,
    provider                 TEXT    NOT NULL,
    instrument               TEXT    NOT NULL,
    hourly_commitment_micros BIGINT  NOT NULL,
    upfront_micros           BIGINT  NOT NULL,
    expected_savings_micros  BIGINT  NOT NULL,
    action                   TEXT    NOT NULL,
    summary                  TEXT    NOT NULL,
    idempotency_key          TEXT    UNIQUE,
    requested_at_ms          BIGINT,
    commitment_id            TEXT,
    provider_request_id      TEXT,
    outcome                  TEXT,
    action_digest            TEXT,
    given_up_hourly_micros   BIGINT  NOT NULL DEFAULT 0,
    attempts                 BIGINT  NOT NULL DEFAULT 0,
    first_call_at_ms         BIGINT,
    call_started_at_ms       BIGINT
);
INSERT INTO proposals_new (id, plan_id, created_at_ms, expires_at_ms, updated_at_ms, state,
    proposer, approvals_needed, policy, provider, instrument, hourly_commitment_micros,
    upfront_micros, expected_savings_micros, action, summary, idempotency_key, requested_at_ms,
    commitment_id, provider_request_id, outcome)
SELECT id, plan_id, created_at_ms, expires_at_ms, updated_at_ms, state,
    proposer, approvals_needed, policy, provider, instrument, hourly_commitment_micros,
    upfront_micros, expected_savings_micros, action, summary, idempotency_key, requested_at_ms,
    commitment_id, provider_request_id, outcome
FROM proposals;

CREATE TABLE proposal_decisions_new (
    proposal_id   TEXT   NOT NULL REFERENCES proposals_new (id),
    actor         TEXT   NOT NULL,
    decision      TEXT   NOT NULL CHECK (decision IN ('approve', 'reject')),
    decided_at_ms BIGINT NOT NULL,
    reason        TEXT,
    -- The action digest the person approved (NULL for decisions stored before digests).
    action_digest TEXT,
    PRIMARY KEY (proposal_id, actor)
);
INSERT INTO proposal_decisions_new (proposal_id, actor, decision, decided_at_ms, reason)
SELECT proposal_id, actor, decision, decided_at_ms, reason FROM proposal_decisions;

DROP TABLE proposal_decisions;
DROP TABLE proposals;
ALTER TABLE proposals_new RENAME TO proposals;
ALTER TABLE proposal_decisions_new RENAME TO proposal_decisions;
CREATE INDEX proposals_state ON proposals (state, created_at_ms);
CREATE INDEX proposals_requested ON proposals (requested_at_ms);

ALTER TABLE leases ADD COLUMN token BIGINT NOT NULL DEFAULT 0;

-- The executor reads a proposal's events by subject before every provider call.
CREATE INDEX audit_events_subject ON audit_events (subject, id);

-- A proposal caught `executing` by the upgrade may have had its provider call made: mark it as
-- a call in flight, so the executor looks it up at the provider before anything else.
UPDATE proposals SET call_started_at_ms = COALESCE(requested_at_ms, updated_at_ms),
    first_call_at_ms = COALESCE(requested_at_ms, updated_at_ms),
    attempts = 1
WHERE state = 'executing';
