-- Treated on or after the decision to admit, still listed: a clock stop
-- coded 30 or a procedure among the pathway's activities, or a procedure
-- recorded against the entry. The PTL says when the latest treatment was;
-- only entries treated since the decision to admit are joined back to
-- the activity that shows it.
SELECT p.eal_id,
       a.activity_type || ' on ' || CAST(a.activity_date AS VARCHAR)
           || ' coded ' || a.rtt_status_code
           || ' (' || coalesce(a.source_system, 'source not named')
           || coalesce(' ' || a.source_reference, '') || ')' AS evidence
FROM ptl p
JOIN pathway_activity a ON a.pathway_id = p.pathway_id
WHERE p.latest_treatment_date >= p.decided_to_admit_date
  AND a.activity_date = p.latest_treatment_date
  AND (a.rtt_status_code = '30' OR a.activity_type = 'procedure')
UNION ALL
SELECT p.eal_id,
       'procedure ' || coalesce(x.procedure_opcs_code, x.procedure_id) || ' on '
           || CAST(x.procedure_date AS VARCHAR) || ' (procedure ' || x.procedure_id || ')' AS evidence
FROM ptl p
JOIN procedure x ON x.encounter_id = p.eal_id
WHERE x.procedure_date >= p.decided_to_admit_date
  AND x.procedure_date <= {as_at}
