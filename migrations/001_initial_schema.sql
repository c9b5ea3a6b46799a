-- The catalog: creators, users, videos and who follows whom.
--
-- Timestamps are timestamptz (microsecond precision); the adapter round-trips them exactly.
-- Enumerations are text with CHECK constraints rather than enum types: adding a value later is a
-- constraint swap instead of an ALTER TYPE that cannot run inside a transaction on older servers.

CREATE TABLE creators (
    id         uuid        PRIMARY KEY,
    handle     text        NOT NULL UNIQUE CHECK (handle <> ''),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id         uuid        PRIMARY KEY,
    handle     text        NOT NULL UNIQUE CHECK (handle <> ''),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE videos (
    id               uuid        PRIMARY KEY,
    creator_id       uuid        NOT NULL REFERENCES creators (id),
    title            text        NOT NULL,
    description      text        NOT NULL DEFAULT '',
    duration_seconds integer     NOT NULL CHECK (duration_seconds >= 0),
    status           text        NOT NULL
        CHECK (status IN ('draft', 'processing', 'published', 'archived', 'deleted')),
    visibility       text        NOT NULL DEFAULT 'public'
        CHECK (visibility IN ('public', 'unlisted', 'private')),
    -- Object-store keys; URLs are derived from them at serve time, so a CDN move is no migration.
    media_key        text        NOT NULL,
    thumbnail_key    text        NOT NULL,
    hashtags         text[]      NOT NULL DEFAULT '{}',
    created_at       timestamptz NOT NULL DEFAULT now(),
    published_at     timestamptz,
    -- Set by the writer, never by a trigger: the change stream's watermark is the writer's value.
    updated_at       timestamptz NOT NULL,
    deleted_at       timestamptz
);

-- The change stream: `WHERE (updated_at, id) > ($1, $2) ORDER BY updated_at, id LIMIT $3`.
CREATE INDEX videos_updated_at_id ON videos (updated_at, id);
-- Foreign-key checks on creator deletion, and per-creator listings.
CREATE INDEX videos_creator_id ON videos (creator_id);

CREATE TABLE follows (
    follower_id uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    creator_id  uuid        NOT NULL REFERENCES creators (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    -- Also serves "the creators a user follows" (leading column follower_id).
    PRIMARY KEY (follower_id, creator_id)
);

-- Cascading deletes of a creator, and follower counts.
CREATE INDEX follows_creator_id ON follows (creator_id);
