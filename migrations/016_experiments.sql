-- Experiments: A/B tests of ranking weights and models (docs/operations.md#experiments).
-- The variants (name, share in buckets of 1/10,000, weights, model version) are one JSON
-- document per experiment: they are written once, at creation, validated by the service, and
-- always read whole. Stopped experiments are kept for their results.
CREATE TABLE IF NOT EXISTS experiments (
    id uuid PRIMARY KEY,
    name text NOT NULL UNIQUE,
    description text NOT NULL DEFAULT '',
    layer text NOT NULL,
    salt text NOT NULL,
    state text NOT NULL CHECK (state IN ('draft', 'running', 'stopped')),
    variants jsonb NOT NULL,
    created_at timestamptz NOT NULL,
    started_at timestamptz,
    stopped_at timestamptz
);

-- At most one running experiment per layer: of two starts at once, the database lets one in.
CREATE UNIQUE INDEX IF NOT EXISTS experiments_one_running_per_layer
    ON experiments (layer) WHERE state = 'running';
