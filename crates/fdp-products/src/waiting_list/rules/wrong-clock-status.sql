-- Activity coded as continuing a clock that had stopped, with no new
-- start; or a first definitive treatment (30) on an attendance that
-- discharged the patient untreated. One join rather than a UNION ALL of
-- two: DuckDB 1.4 does not finish the union at a million entries.
SELECT p.eal_id,
       CASE WHEN a.rtt_status_code IN ('20', '21')
            THEN 'coded ' || a.rtt_status_code || ' on ' || CAST(a.activity_date AS VARCHAR)
                 || ' after the clock stopped on ' || CAST(p.rtt_period_end_date AS VARCHAR)
                 || ' (code ' || p.clock_stop_code || ') with no new clock start: an 11 or 12 belongs'
            ELSE 'coded 30 on ' || CAST(a.activity_date AS VARCHAR) || ', an ' || a.activity_type
                 || ' that ' || a.activity_outcome || ': a 34 belongs'
       END AS evidence
FROM ptl p
JOIN pathway_activity a ON a.pathway_id = p.pathway_id
WHERE a.activity_date <= {as_at}
  AND ((p.clock = 'stopped'
        AND a.rtt_status_code IN ('20', '21')
        AND a.activity_date > p.rtt_period_end_date)
    OR (a.rtt_status_code = '30'
        AND a.activity_outcome = 'discharged without treatment'))
