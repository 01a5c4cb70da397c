-- Waiting 12 weeks or more (with two weeks' grace) and not reached in the
-- last 12 weeks, or not since the 12, 26 or 52-week point it has passed.
-- `last_reached_date` is the PTL's: the last validation contact that
-- reached the patient by {as_at}.
SELECT p.eal_id,
       CASE WHEN p.last_reached_date IS NULL OR p.last_reached_date < p.rtt_period_start_date
                THEN 'not reached since the clock started, '
                     || CAST(p.rtt_weeks_waiting AS VARCHAR) || ' weeks ago'
            WHEN p.last_reached_date - p.rtt_period_start_date < p.point_weeks * 7
                THEN 'last reached ' || CAST(p.last_reached_date AS VARCHAR) || ', before the '
                     || CAST(p.point_weeks AS VARCHAR) || '-week point'
            ELSE 'last reached ' || CAST(p.last_reached_date AS VARCHAR) || ', '
                 || CAST({as_at} - p.last_reached_date AS VARCHAR) || ' days ago'
       END AS evidence
FROM (SELECT ptl.*,
             CASE WHEN rtt_period_length >= 364 + 14 THEN 52
                  WHEN rtt_period_length >= 182 + 14 THEN 26
                  ELSE 12 END AS point_weeks
      FROM ptl
      WHERE clock = 'running' AND rtt_period_length >= 84 + 14) p
WHERE p.last_reached_date IS NULL
   OR p.last_reached_date < p.rtt_period_start_date
   OR p.last_reached_date - p.rtt_period_start_date < p.point_weeks * 7
   OR {as_at} - p.last_reached_date > 84
