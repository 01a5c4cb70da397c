-- Patients medically optimised and still in a bed, by ward. :as_at is the
-- day counted to; without it, today.
SELECT s.ward_id,
       count(*) AS patients,
       round(avg(date_part('day',
           CAST(coalesce(:as_at, current_date) AS TIMESTAMP)
           - CAST(r.medically_optimised_date AS TIMESTAMP))), 1) AS mean_days_delayed
FROM discharge_readiness r
JOIN admission a ON a.admission_id = r.admission_id
JOIN ward_stay s ON s.admission_id = r.admission_id
WHERE r.medically_optimised
  AND a.discharge_timestamp IS NULL
  AND s.end_timestamp IS NULL
GROUP BY s.ward_id
ORDER BY patients DESC, s.ward_id
