-- Idempotency keys: a change sent with `Idempotency-Key` is done at most once per user and
-- key. The key is written with the change's audit row, in the change's transaction, so a
-- retry after an answer was lost can tell that the change was made; the answer itself is
-- kept to be given again.
ALTER TABLE audit ADD COLUMN idempotency_key TEXT;
CREATE INDEX audit_idempotency ON audit (actor, idempotency_key);

CREATE TABLE idempotency (
    actor TEXT NOT NULL,
    key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    status BIGINT,
    content_type TEXT,
    body TEXT,
    PRIMARY KEY (actor, key)
);
