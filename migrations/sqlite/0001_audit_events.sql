-- The append-only, hash-chained audit log (see docs/audit.md).
--
-- `id` is the event's position in the chain (1, 2, 3, ...), assigned by the appender as
-- head + 1, never by AUTOINCREMENT: a gap or a duplicate is then a visible fault, and the
-- PRIMARY KEY plus UNIQUE(prev_hash) make a forked chain impossible to store even if two
-- writers raced past the application's own serialization.
CREATE TABLE audit_events (
    id            INTEGER PRIMARY KEY CHECK (id >= 1),
    -- RFC 3339 UTC with exactly six fractional digits ("2026-11-24T06:00:00.000000Z"):
    -- fixed width, so text order is time order for --since / --until.
    occurred_at   TEXT    NOT NULL CHECK (length(occurred_at) = 27 AND substr(occurred_at, 27, 1) = 'Z'),
    kind          TEXT    NOT NULL CHECK (kind <> ''),
    actor         TEXT    NOT NULL CHECK (actor <> ''),
    subject       TEXT    NOT NULL,
    -- Exact integer micro-units of `currency`; both present or both absent.
    amount_micros INTEGER,
    currency      TEXT,
    -- Canonical JSON objects (sorted keys, no whitespace), exactly as hashed.
    payload       TEXT    NOT NULL CHECK (json_valid(payload) AND json_type(payload) = 'object'),
    rationale     TEXT    NOT NULL CHECK (json_valid(rationale) AND json_type(rationale) = 'object'),
    prev_hash     TEXT    NOT NULL UNIQUE CHECK (length(prev_hash) = 64),
    hash          TEXT    NOT NULL UNIQUE CHECK (length(hash) = 64),
    CHECK ((amount_micros IS NULL) = (currency IS NULL))
);

CREATE INDEX audit_events_occurred_at ON audit_events (occurred_at);
CREATE INDEX audit_events_kind ON audit_events (kind, id);

-- Append-only is enforced by the database, not only by the application: any UPDATE or
-- DELETE aborts, whoever issues it.
CREATE TRIGGER audit_events_refuse_update BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only: UPDATE refused');
END;

CREATE TRIGGER audit_events_refuse_delete BEFORE DELETE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only: DELETE refused');
END;
