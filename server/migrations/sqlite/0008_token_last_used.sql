-- When each bearer token was last used (to the minute), so its owner and the admins can
-- tell a token in use from a forgotten one before revoking it.
ALTER TABLE tokens ADD COLUMN last_used_at_ms BIGINT;
