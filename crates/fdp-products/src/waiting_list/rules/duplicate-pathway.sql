-- The same patient listed twice for the same procedure: the later-listed
-- entry (the same day, the one created second) is the duplicate.
SELECT later.eal_id,
       'also listed as ' || earlier.eal_id || ' for ' || later.procedure_code
           || ' since ' || CAST(earlier.decided_to_admit_date AS VARCHAR) AS evidence
FROM ptl later
JOIN ptl earlier
  ON earlier.patient_id = later.patient_id
 AND earlier.procedure_code = later.procedure_code
 AND earlier.eal_id <> later.eal_id
WHERE earlier.decided_to_admit_date < later.decided_to_admit_date
   OR (earlier.decided_to_admit_date = later.decided_to_admit_date
       AND earlier.eal_id < later.eal_id)
