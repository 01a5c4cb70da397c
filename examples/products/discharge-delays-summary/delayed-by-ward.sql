-- Asked of each member by its ICB: patients recorded medically optimised
-- and still in a bed at :census_at, by ward. Answered in aggregate, under
-- the member's policy, opt-out and disclosure control.
SELECT s.ward_id,
       count(*) AS patients
FROM discharge_readiness r
JOIN ward_stay s ON s.admission_id = r.admission_id
WHERE r.medically_optimised
  AND r.updated_timestamp <= :census_at
  AND s.start_timestamp <= :census_at
  AND (s.end_timestamp IS NULL OR s.end_timestamp > :census_at)
GROUP BY s.ward_id
ORDER BY s.ward_id
