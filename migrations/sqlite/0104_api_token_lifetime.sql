-- Tokens expire and can be rotated (docs/operations.md, "Tokens").
-- expires_at_ms: after it the token no longer authenticates. Tokens created before this
-- migration get 90 days from their creation (the default lifetime), so an old, forgotten token
-- stops working instead of living forever. A NULL never authenticates (the comparison is NULL).
ALTER TABLE api_tokens ADD COLUMN expires_at_ms BIGINT;
UPDATE api_tokens SET expires_at_ms = created_at_ms + 7776000000 WHERE expires_at_ms IS NULL;
-- Rotation: the previous secret's SHA-256 keeps authenticating until previous_expires_at_ms
-- (the grace period, 0 = it died at once); only hashes are stored, never a secret.
ALTER TABLE api_tokens ADD COLUMN previous_sha256 TEXT CHECK (previous_sha256 IS NULL OR length(previous_sha256) = 64);
ALTER TABLE api_tokens ADD COLUMN previous_expires_at_ms BIGINT;
ALTER TABLE api_tokens ADD COLUMN rotated_at_ms BIGINT;
-- Who created (or last rotated) the token: an admin token's name or a mapped OS user.
ALTER TABLE api_tokens ADD COLUMN created_by TEXT;
CREATE INDEX api_tokens_previous ON api_tokens (previous_sha256);
