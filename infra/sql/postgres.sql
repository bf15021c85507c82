-- MovieRecs PostgreSQL schema (idempotent; applied by `python -m movierecs_stack up` as user movierecs).
-- Statements are separated by ";" at the end of a line (the orchestrator splits on that).
-- `added_at`: set for movies added through POST /admin/movies (NULL for MovieLens);
-- `hidden`: PATCH /admin/movies/{id} took the movie out of every list (issue 12, part 3).
CREATE TABLE IF NOT EXISTS movies (
    movie_id integer     PRIMARY KEY,
    title    text        NOT NULL,
    year     integer,
    genres   text[]      NOT NULL,
    added_at timestamptz,
    hidden   boolean     NOT NULL DEFAULT false
);
-- A movies table created before issue 12 gets the two columns.
ALTER TABLE movies ADD COLUMN IF NOT EXISTS added_at timestamptz;
ALTER TABLE movies ADD COLUMN IF NOT EXISTS hidden boolean NOT NULL DEFAULT false;
-- The request path reads the (few) hidden and added movies with every user's state.
CREATE INDEX IF NOT EXISTS movies_hidden ON movies (movie_id) WHERE hidden;
CREATE INDEX IF NOT EXISTS movies_added ON movies (movie_id) WHERE added_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS users (
    user_id    integer PRIMARY KEY,
    gender     text,
    age        integer,
    occupation integer,
    zip        text
);
-- The serving state (docs/DESIGN.md, "The read path"): what GET /recommendations and
-- GET /users/{id}/likes read per request, one indexed point read per user. The consumer
-- writes it in the same batch as ClickHouse (which stays the history for training and
-- analytics); `python -m movierecs_training backfill` fills it from ClickHouse once.
-- One row per feedback event, keyed like ClickHouse's likes (user_id, event_id): a
-- redelivered event is a no-op (ON CONFLICT DO NOTHING). `kind` is the event's type: like,
-- unlike or not_interested; per (user, movie) the latest event (by ts, then by `seq`, the
-- order the consumer stored them in, which is the topic's order for one user) wins.
CREATE TABLE IF NOT EXISTS user_events (
    user_id  integer     NOT NULL,
    event_id text        NOT NULL,
    movie_id integer     NOT NULL,
    kind     text        NOT NULL DEFAULT 'like',
    ts       timestamptz NOT NULL,
    seq      bigserial,
    PRIMARY KEY (user_id, event_id)
);
-- A user_events table created before feedback types existed gets the order column.
ALTER TABLE user_events ADD COLUMN IF NOT EXISTS seq bigserial;
-- The likes page reads a user's newest events first.
CREATE INDEX IF NOT EXISTS user_events_newest ON user_events (user_id, ts DESC, event_id DESC);
-- Each user's rated movies (MovieLens ratings), never recommended back to them; one row per user.
CREATE TABLE IF NOT EXISTS user_ratings (
    user_id integer   PRIMARY KEY,
    movies  integer[] NOT NULL
);
-- Forgotten users (DELETE /users/{id}): the deletion time, so that the consumer never stores
-- an event produced before it (an old Kafka message) and the user is served as new.
CREATE TABLE IF NOT EXISTS deleted_users (
    user_id    integer     PRIMARY KEY,
    deleted_at timestamptz NOT NULL
);
-- One row per finished backfill step, so `make up` fills the serving state once.
CREATE TABLE IF NOT EXISTS serving_backfill (
    step    text        PRIMARY KEY,
    rows    bigint      NOT NULL,
    done_at timestamptz NOT NULL
);
-- Online experiments between two model versions (issue 13, docs/EXPERIMENTS.md). At most one
-- runs at a time (the partial unique index), so a second POST /admin/experiments is a 409.
CREATE TABLE IF NOT EXISTS experiments (
    experiment_id   text             PRIMARY KEY,
    control         text             NOT NULL,
    candidate       text             NOT NULL,
    share           double precision NOT NULL CHECK (share > 0 AND share < 1),
    min_impressions integer          NOT NULL,
    max_hours       double precision NOT NULL,
    alpha           double precision NOT NULL,
    status          text             NOT NULL,
    decision        text,
    reason          text,
    created_at      timestamptz      NOT NULL,
    ended_at        timestamptz
);
CREATE UNIQUE INDEX IF NOT EXISTS experiments_one_running ON experiments ((true)) WHERE status = 'running';
