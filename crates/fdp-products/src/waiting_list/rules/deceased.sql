-- The patient has died: the pathway record says so.
SELECT p.eal_id,
       'pathway ' || p.pathway_id || ' records the patient as deceased' AS evidence
FROM ptl p
WHERE p.patient_deceased
