-- MovieRecs PostgreSQL schema (idempotent; applied by `python -m movierecs_stack up` as user movierecs).
-- Statements are separated by ";" at the end of a line (the orchestrator splits on that).
CREATE TABLE IF NOT EXISTS movies (
    movie_id integer PRIMARY KEY,
    title    text    NOT NULL,
    year     integer,
    genres   text[]  NOT NULL
);
CREATE TABLE IF NOT EXISTS users (
    user_id    integer PRIMARY KEY,
    gender     text,
    age        integer,
    occupation integer,
    zip        text
);
