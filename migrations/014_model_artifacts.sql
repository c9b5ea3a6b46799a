-- The model registry in use: each version's artifact (what every replica loads to score), and the
-- history of activations (what `models rollback` goes back along).

-- The artifact is the videos' side of a factorization model (tens of MB for 100k videos at most):
-- stored with its version so that registering, activating and loading are one transaction and one
-- store; replicas read it only when the active version changes.
ALTER TABLE ml_models ADD COLUMN IF NOT EXISTS artifact bytea;

CREATE TABLE IF NOT EXISTS ml_model_activations (
    id           bigserial   PRIMARY KEY,
    version      text        NOT NULL REFERENCES ml_models (version),
    activated_at timestamptz NOT NULL
);
