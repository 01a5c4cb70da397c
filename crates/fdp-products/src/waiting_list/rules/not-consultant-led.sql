-- On an RTT clock under an allied health professional service.
SELECT p.eal_id,
       'treatment function ' || p.treatment_function_code
           || coalesce(' (' || p.specialty || ')', '') || ' is not consultant-led' AS evidence
FROM ptl p
WHERE p.clock <> 'no clock'
  AND p.treatment_function_code IN ('650', '651', '652', '653', '654', '655', '656', '657',
                                    '658', '659', '660', '661', '662', '840', '920')
