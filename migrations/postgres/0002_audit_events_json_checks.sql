-- Validate payload and rationale as `json`, not `jsonb`: jsonb refuses the escape \u0000,
-- which is valid JSON and which the canonical form emits for a NUL character in a string,
-- so an event whose rationale quoted such a string could not be appended. `json` checks the
-- syntax only, which is all the constraint is for. (A new migration rather than an edit of
-- 0001: applied migrations are checksummed and never change.)
ALTER TABLE audit_events
    DROP CONSTRAINT audit_events_payload_check,
    DROP CONSTRAINT audit_events_rationale_check,
    ADD CONSTRAINT audit_events_payload_object CHECK (json_typeof(payload::json) = 'object'),
    ADD CONSTRAINT audit_events_rationale_object CHECK (json_typeof(rationale::json) = 'object');
