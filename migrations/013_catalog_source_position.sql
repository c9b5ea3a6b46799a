-- Where each video's last applied change stands in the source's history (the posts service's
-- database, through the change stream): its commit time there, in microseconds since the epoch,
-- then its log position (PostgreSQL LSN; 0 when the source has none). A change is applied only
-- when it is not older, so a redelivered or reordered change never overwrites a newer one or
-- brings a deleted video back. NULL for rows written without a position (imports, the demo
-- seed): any change from the source replaces them.
--
-- Nullable columns without a default: adding them rewrites nothing and takes no long lock.
ALTER TABLE videos
    ADD COLUMN source_committed_at_us bigint,
    ADD COLUMN source_log_position    bigint;

-- The newest truncate of the source table applied to the catalog: a change older than it is
-- skipped even for a video the catalog does not hold (a truncate event carries no key, so it may
-- overtake the changes before it on another partition of the change stream). One row at most.
CREATE TABLE catalog_truncations (
    singleton              boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    source_committed_at_us bigint  NOT NULL,
    source_log_position    bigint  NOT NULL
);
