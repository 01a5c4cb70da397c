-- On an RTT clock under an allied health professional service.
SELECT p.eal_id,
       'treatment function ' || w.treatment_function_code
           || coalesce(' (' || w.specialty_name || ')', '') || ' is not consultant-led' AS evidence
FROM ptl p
JOIN patient_pathway w ON w.pathway_id = p.pathway_id
WHERE p.clock <> 'no clock'
  AND w.treatment_function_code IN ('650', '651', '652', '653', '654', '655', '656', '657',
                                    '658', '659', '660', '661', '662', '840', '920')
