-- Synthetic pipeline for the analytics benchmark: :leads leads created ten minutes apart from
-- 2024-11-01 on, each following one of seven funnel paths (every lifecycle edge occurs),
-- 70% of them scored, and a Sale in one of five paths for every transferred lead. All values
-- are derived from the lead's number, so every run builds the same data. 25 managers own the
-- leads, except one in 50 (written before authentication existed).
INSERT INTO users (id, name, role)
SELECT 'bench-user-' || n, 'Bench User ' || n, 'manager' FROM generate_series(1, 25) AS n;

CREATE TEMP TABLE bench_paths AS
SELECT
    g AS id,
    (ARRAY['SCANNER', 'PARTNER', 'MANUAL'])[1 + g % 3] AS source,
    CASE
        WHEN g % 20 < 2 THEN ARRAY['NEW']
        WHEN g % 20 < 4 THEN ARRAY['NEW', 'LOST']
        WHEN g % 20 < 6 THEN ARRAY['NEW', 'CONTACTED']
        WHEN g % 20 < 9 THEN ARRAY['NEW', 'CONTACTED', 'LOST']
        WHEN g % 20 < 11 THEN ARRAY['NEW', 'CONTACTED', 'QUALIFIED']
        WHEN g % 20 < 13 THEN ARRAY['NEW', 'CONTACTED', 'QUALIFIED', 'LOST']
        ELSE ARRAY['NEW', 'CONTACTED', 'QUALIFIED', 'TRANSFERRED']
    END AS path,
    CASE (g / 20) % 7
        WHEN 0 THEN ARRAY['NEW']
        WHEN 1 THEN ARRAY['NEW', 'KYC']
        WHEN 2 THEN ARRAY['NEW', 'KYC', 'AGREEMENT']
        WHEN 6 THEN ARRAY['NEW', 'LOST']
        ELSE ARRAY['NEW', 'KYC', 'AGREEMENT', 'PAID']
    END AS sale_path,
    timestamptz '2024-11-01 00:00+00' + g * interval '10 minutes' AS created_at,
    interval '1 hour' * (1 + (g * 7919) % 200) AS gap,
    CASE WHEN g % 10 < 7 THEN ((g * 104729) % 101) / 100.0 END AS score_value
FROM generate_series(1::bigint, :leads) AS g;

INSERT INTO leads (id, source, stage, score_value, score, created_at, updated_at, owner_id)
SELECT
    id, source, path[cardinality(path)], score_value,
    CASE WHEN score_value IS NOT NULL THEN jsonb_build_object(
        'recommendation', CASE WHEN score_value >= 0.6 THEN 'TRANSFER_TO_SALES' ELSE 'NURTURE' END,
        'reasons', jsonb_build_array(),
        'factors', jsonb_build_array(),
        'scorer', 'bench',
        'scorer_version', '1',
        'scored_at', created_at + gap / 2,
        'inputs', jsonb_build_object(
            'source', source, 'business_domain', NULL, 'activity_count', 0))
    END,
    created_at, created_at,
    CASE WHEN id % 50 <> 7 THEN 'bench-user-' || (1 + (id * 31) % 25) END
FROM bench_paths;

INSERT INTO stage_changes (lead_id, from_stage, to_stage, at)
SELECT p.id, p.path[step.n - 1], step.stage, p.created_at + (step.n - 1) * p.gap
FROM bench_paths AS p, unnest(p.path) WITH ORDINALITY AS step(stage, n);

INSERT INTO sales (id, lead_id, stage, created_at, updated_at)
SELECT id, id, sale_path[cardinality(sale_path)], created_at + 3 * gap, created_at + 3 * gap
FROM bench_paths WHERE path[4] = 'TRANSFERRED';

INSERT INTO stage_changes (sale_id, from_stage, to_stage, at)
SELECT p.id, p.sale_path[step.n - 1], step.stage, p.created_at + (2 + step.n) * p.gap
FROM bench_paths AS p, unnest(p.sale_path) WITH ORDINALITY AS step(stage, n)
WHERE p.path[4] = 'TRANSFERRED';
