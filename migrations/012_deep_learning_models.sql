-- The model registry: deployed versions of the learned relevance model, at most one active.

CREATE TABLE ml_models (
    version             text        PRIMARY KEY CHECK (version <> ''),
    deployed_at         timestamptz NOT NULL,
    is_active           boolean     NOT NULL DEFAULT false,
    -- Offline evaluation results (e.g. {"auc": 0.81}); shape owned by the training pipeline.
    performance_metrics jsonb       NOT NULL DEFAULT '{}'::jsonb,
    -- Videos scored with this version, flushed by each replica on every snapshot refresh.
    inference_count     bigint      NOT NULL DEFAULT 0 CHECK (inference_count >= 0),
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now()
);

-- At most one active model; deployment swaps it in one transaction.
CREATE UNIQUE INDEX ml_models_one_active ON ml_models (is_active) WHERE is_active;
