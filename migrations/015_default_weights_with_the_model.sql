-- The default weights give the learned model its share: freshness 0.10, completion 0.25,
-- engagement 0.15, affinity 0.10, model 0.40 (`Weights::DEFAULT`; docs/ranking.md has the offline
-- measurements). A deployment still on the seed's weights (version 1, the only version) gets them
-- as version 2; one whose operators chose their own keeps them. To go back, PUT the old weights
-- (docs/operations.md#ranking-weights).
DO $$
BEGIN
    IF (SELECT count(*) FROM ranking_weights) = 1 AND EXISTS (
        SELECT 1 FROM ranking_weights
        WHERE version = 1 AND is_active
          AND freshness = 0.15 AND completion = 0.40 AND engagement = 0.25
          AND affinity = 0.15 AND model = 0.05
    ) THEN
        UPDATE ranking_weights SET is_active = false WHERE version = 1;
        INSERT INTO ranking_weights
            (freshness, completion, engagement, affinity, model, activated_at, is_active)
        VALUES (0.10, 0.25, 0.15, 0.10, 0.40, now(), true);
    END IF;
END
$$;
