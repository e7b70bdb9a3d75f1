-- The append-only, hash-chained audit log (see docs/audit.md).
--
-- `id` is the event's position in the chain (1, 2, 3, ...), assigned by the appender as
-- head + 1 under a transaction-scoped advisory lock, never by a sequence: a gap or a
-- duplicate is then a visible fault, and the PRIMARY KEY plus UNIQUE(prev_hash) make a
-- forked chain impossible to store even if the lock were bypassed.
CREATE TABLE audit_events (
    id            BIGINT      PRIMARY KEY CHECK (id >= 1),
    -- Microsecond precision, like the canonical form, so the stored time round-trips exactly.
    occurred_at   TIMESTAMPTZ NOT NULL,
    kind          TEXT        NOT NULL CHECK (kind <> ''),
    actor         TEXT        NOT NULL CHECK (actor <> ''),
    subject       TEXT        NOT NULL,
    -- Exact integer micro-units of `currency`; both present or both absent.
    amount_micros BIGINT,
    currency      TEXT,
    -- Canonical JSON text (sorted keys, no whitespace), exactly as hashed. TEXT and not JSONB
    -- on purpose: JSONB re-orders keys and re-spells numbers, which would change the bytes
    -- the hash covers. Cast to jsonb in queries when needed.
    payload       TEXT        NOT NULL CHECK (jsonb_typeof(payload::jsonb) = 'object'),
    rationale     TEXT        NOT NULL CHECK (jsonb_typeof(rationale::jsonb) = 'object'),
    prev_hash     TEXT        NOT NULL UNIQUE CHECK (length(prev_hash) = 64),
    hash          TEXT        NOT NULL UNIQUE CHECK (length(hash) = 64),
    CHECK ((amount_micros IS NULL) = (currency IS NULL))
);

CREATE INDEX audit_events_occurred_at ON audit_events (occurred_at);
CREATE INDEX audit_events_kind ON audit_events (kind, id);

-- Append-only is enforced by the database, not only by the application: UPDATE, DELETE and
-- TRUNCATE raise, whoever issues them (short of the owner dropping the triggers, which
-- `commitd audit verify` then detects through the hash chain).
CREATE FUNCTION audit_events_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER audit_events_refuse_update_delete
    BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_refuse_change();

CREATE TRIGGER audit_events_refuse_truncate
    BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_refuse_change();
