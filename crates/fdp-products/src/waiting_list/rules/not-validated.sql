-- Waiting 12 weeks or more (with two weeks' grace) and not reached in the
-- last 12 weeks, or not since the 12, 26 or 52-week point it has passed.
WITH reached AS (
    SELECT pathway_id, max(activity_date) AS last_reached
    FROM pathway_activity
    WHERE activity_type = 'validation'
      AND activity_outcome = 'contacted'
      AND activity_date <= {as_at}
    GROUP BY pathway_id
),
due AS (
    SELECT p.eal_id,
           p.pathway_id,
           p.rtt_period_start_date,
           p.rtt_weeks_waiting,
           CASE WHEN p.rtt_period_length >= 364 + 14 THEN 52
                WHEN p.rtt_period_length >= 182 + 14 THEN 26
                ELSE 12 END AS point_weeks
    FROM ptl p
    WHERE p.clock = 'running'
      AND p.rtt_period_length >= 84 + 14
)
SELECT d.eal_id,
       CASE WHEN r.last_reached IS NULL OR r.last_reached < d.rtt_period_start_date
                THEN 'not reached since the clock started, '
                     || CAST(d.rtt_weeks_waiting AS VARCHAR) || ' weeks ago'
            WHEN r.last_reached - d.rtt_period_start_date < d.point_weeks * 7
                THEN 'last reached ' || CAST(r.last_reached AS VARCHAR) || ', before the '
                     || CAST(d.point_weeks AS VARCHAR) || '-week point'
            ELSE 'last reached ' || CAST(r.last_reached AS VARCHAR) || ', '
                 || CAST({as_at} - r.last_reached AS VARCHAR) || ' days ago'
       END AS evidence
FROM due d
LEFT JOIN reached r ON r.pathway_id = d.pathway_id
WHERE r.last_reached IS NULL
   OR r.last_reached < d.rtt_period_start_date
   OR r.last_reached - d.rtt_period_start_date < d.point_weeks * 7
   OR {as_at} - r.last_reached > 84
