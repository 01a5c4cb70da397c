-- Still waiting after the latest date the clinician thought appropriate.
SELECT p.eal_id,
       'latest clinically appropriate date ' || CAST(p.latest_clinically_appropriate_date AS VARCHAR)
           || ', ' || CAST({as_at} - p.latest_clinically_appropriate_date AS VARCHAR) || ' days ago' AS evidence
FROM ptl p
WHERE p.clock = 'running'
  AND p.latest_clinically_appropriate_date < {as_at}
