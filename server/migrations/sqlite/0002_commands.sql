-- Transient commands sent to gateways (identify, channel test) and their acks.
CREATE TABLE commands (
    id TEXT PRIMARY KEY,
    gateway TEXT NOT NULL,
    action_json TEXT NOT NULL,
    sent_by TEXT NOT NULL,
    sent_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    result TEXT,
    reason TEXT,
    answered_at_ms BIGINT
);
CREATE INDEX commands_sent ON commands (sent_at_ms);
