-- Up to when each gateway's telemetry has been counted into the energy table, and the time
-- before the last step: replicas all receive every telemetry message, and each slice of time
-- is counted once (one UPDATE moves the cursor and returns where it was).
ALTER TABLE gateways ADD COLUMN energy_at_ms BIGINT;
ALTER TABLE gateways ADD COLUMN energy_prev_ms BIGINT;
