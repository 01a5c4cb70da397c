-- Three or more attempts to reach the patient since they last answered,
-- none answered.
WITH answered AS (
    SELECT pathway_id,
           max(CASE WHEN activity_outcome = 'contacted' THEN activity_date END) AS last_answered
    FROM pathway_activity
    WHERE activity_type = 'validation'
      AND activity_date <= {as_at}
    GROUP BY pathway_id
),
unanswered AS (
    SELECT a.pathway_id,
           max(t.last_answered) AS last_answered,
           count(*) AS attempts,
           max(a.activity_date) AS last_attempt
    FROM pathway_activity a
    JOIN answered t ON t.pathway_id = a.pathway_id
    WHERE a.activity_type = 'validation'
      AND a.activity_outcome = 'no response'
      AND a.activity_date <= {as_at}
      AND (t.last_answered IS NULL OR a.activity_date > t.last_answered)
    GROUP BY a.pathway_id
)
SELECT p.eal_id,
       CAST(u.attempts AS VARCHAR) || ' attempts unanswered since '
           || coalesce('the patient last answered on ' || CAST(u.last_answered AS VARCHAR), 'listing')
           || ', the last on ' || CAST(u.last_attempt AS VARCHAR) AS evidence
FROM ptl p
JOIN unanswered u ON u.pathway_id = p.pathway_id
WHERE u.attempts >= 3
