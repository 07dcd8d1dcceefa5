-- When the server heard each gateway: stretches of its state and telemetry messages, each
-- at most the intake's gap after the last. The compliance report counts a night's reported
-- cues only inside them; the rest of the night is "not reported", not lit or dark. At most
-- one stretch per gateway is open (still being extended); a gateway's offline state, or a
-- message after a longer silence, closes it where the gateway was last heard.
CREATE TABLE reporting (
    gateway TEXT NOT NULL,
    from_ms BIGINT NOT NULL,
    to_ms BIGINT NOT NULL,
    open BIGINT NOT NULL DEFAULT 1,
    PRIMARY KEY (gateway, from_ms)
);
CREATE UNIQUE INDEX reporting_one_open ON reporting (gateway) WHERE open = 1;
