-- The patient has died.
SELECT p.eal_id,
       'pathway ' || w.pathway_id || ' records the patient as deceased' AS evidence
FROM ptl p
JOIN patient_pathway w ON w.pathway_id = p.pathway_id
WHERE w.patient_deceased
