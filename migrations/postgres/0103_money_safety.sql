-- Money safety: see migrations/sqlite/0103_money_safety.sql for what each column is for.
ALTER TABLE proposals DROP CONSTRAINT IF EXISTS proposals_state_check;
ALTER TABLE proposals ADD CONSTRAINT proposals_state_check CHECK (state IN ('proposed', 'approved', 'rejected', 'expired', 'executing', 'executed', 'failed', 'needs_review'));
ALTER TABLE proposals ADD COLUMN action_digest TEXT;
ALTER TABLE proposals ADD COLUMN given_up_hourly_micros BIGINT NOT NULL DEFAULT 0;
ALTER TABLE proposals ADD COLUMN attempts BIGINT NOT NULL DEFAULT 0;
ALTER TABLE proposals ADD COLUMN first_call_at_ms BIGINT;
ALTER TABLE proposals ADD COLUMN call_started_at_ms BIGINT;
ALTER TABLE proposal_decisions ADD COLUMN action_digest TEXT;
ALTER TABLE leases ADD COLUMN token BIGINT NOT NULL DEFAULT 0;

-- The executor reads a proposal's events by subject before every provider call.
CREATE INDEX audit_events_subject ON audit_events (subject, id);

-- A proposal caught `executing` by the upgrade may have had its provider call made: mark it as
-- a call in flight, so the executor looks it up at the provider before anything else.
UPDATE proposals SET call_started_at_ms = COALESCE(requested_at_ms, updated_at_ms),
    first_call_at_ms = COALESCE(requested_at_ms, updated_at_ms),
    attempts = 1
WHERE state = 'executing';
