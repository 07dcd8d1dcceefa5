-- The change generation the stored plans were last compiled at, and by which build of the
-- server: a restart of the same build with nothing changed republishes them as they are
-- instead of compiling a city's plans again before the first round can send anything.
CREATE TABLE plans_compiled (
    id BIGINT PRIMARY KEY,
    generation BIGINT NOT NULL,
    build TEXT NOT NULL
);
