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
