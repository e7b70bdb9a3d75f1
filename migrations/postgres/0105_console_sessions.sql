-- Web console sessions (docs/console.md): an API token exchanged for a session at login.
-- Only the SHA-256 of the session's cookie secret is stored (a leaked database gives no usable
-- session), with the SHA-256 of the token it was opened with: a session authenticates only
-- while that token does (not expired, revoked or rotated away), and with the token's role now.
-- csrf: the per-session anti-forgery token every console form carries.
CREATE TABLE console_sessions (
    id_sha256 TEXT PRIMARY KEY CHECK (length(id_sha256) = 64),
    name TEXT NOT NULL,
    token_sha256 TEXT NOT NULL CHECK (length(token_sha256) = 64),
    csrf TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL
);
CREATE INDEX console_sessions_expiry ON console_sessions (expires_at_ms);
