-- MovieRecs ClickHouse schema (idempotent; applied through the chDB HTTP endpoint by `up`).
-- One statement per ";"-terminated block; database `movierecs` (see docs/DESIGN.md).
CREATE DATABASE IF NOT EXISTS movierecs;

CREATE TABLE IF NOT EXISTS movierecs.ratings (
    user_id  UInt32,
    movie_id UInt32,
    rating   UInt8,
    ts       DateTime('UTC')
) ENGINE = ReplacingMergeTree ORDER BY (user_id, movie_id);

-- Every feedback event (the history): `type` is like, unlike or not_interested (issue 12);
-- the table keeps its first name, `likes`, for its readers.
CREATE TABLE IF NOT EXISTS movierecs.likes (
    event_id    String,
    user_id     UInt32,
    movie_id    UInt32,
    ts          DateTime64(3, 'UTC'),
    ingested_at DateTime64(3, 'UTC'),
    type        LowCardinality(String) DEFAULT 'like'
) ENGINE = ReplacingMergeTree ORDER BY (user_id, event_id);
-- A likes table created before feedback types existed gets the column (its rows are likes).
ALTER TABLE movierecs.likes ADD COLUMN IF NOT EXISTS type LowCardinality(String) DEFAULT 'like';

CREATE TABLE IF NOT EXISTS movierecs.dead_letters (
    ts        DateTime64(3, 'UTC'),
    topic     String,
    partition UInt32,
    offset    UInt64,
    key       String,
    value     String,
    reason    String
) ENGINE = MergeTree ORDER BY ts;

CREATE TABLE IF NOT EXISTS movierecs.requests (
    ts            DateTime64(3, 'UTC'),
    function      LowCardinality(String),
    route         String,
    status        UInt16,
    latency_ms    Float32,
    model_version String,
    request_id    String
) ENGINE = MergeTree ORDER BY ts;

-- Every list the API served (issue 13): written by the impressions consumer from the Kafka
-- topic `impressions`; one row per request, the movie ids in the order shown.
CREATE TABLE IF NOT EXISTS movierecs.impressions (
    ts            DateTime64(3, 'UTC'),
    request_id    String,
    user_id       UInt32,
    listing       LowCardinality(String),
    source_movie  UInt32,
    model_version LowCardinality(String),
    arm           LowCardinality(String),
    experiment_id String,
    strategy      LowCardinality(String),
    movie_ids     Array(UInt32),
    ingested_at   DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree ORDER BY (request_id);
