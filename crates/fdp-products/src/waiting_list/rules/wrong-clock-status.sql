-- Activity coded as continuing a clock that had stopped, with no new
-- start; or a first definitive treatment (30) on an attendance that
-- discharged the patient untreated. The PTL carries each pathway's latest
-- continuing code and latest such 30, so the rule reads no activity.
SELECT p.eal_id,
       CASE WHEN p.clock = 'stopped' AND p.latest_continuing_date > p.rtt_period_end_date
            THEN 'coded ' || p.latest_continuing_code || ' on ' || CAST(p.latest_continuing_date AS VARCHAR)
                 || ' after the clock stopped on ' || CAST(p.rtt_period_end_date AS VARCHAR)
                 || ' (code ' || p.clock_stop_code || ') with no new clock start: an 11 or 12 belongs'
            ELSE 'coded 30 on ' || CAST(p.coded_30_on_discharge_date AS VARCHAR)
                 || ', an attendance that discharged the patient without treatment: a 34 belongs'
       END AS evidence
FROM ptl p
WHERE (p.clock = 'stopped' AND p.latest_continuing_date > p.rtt_period_end_date)
   OR p.coded_30_on_discharge_date IS NOT NULL
