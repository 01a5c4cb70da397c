-- Three or more attempts to reach the patient since they last answered,
-- none answered (the PTL counts them from the pathway's activities).
SELECT p.eal_id,
       CAST(p.unanswered_attempts AS VARCHAR) || ' attempts unanswered since '
           || coalesce('the patient last answered on ' || CAST(p.last_reached_date AS VARCHAR), 'listing')
           || ', the last on ' || CAST(p.last_attempt_date AS VARCHAR) AS evidence
FROM ptl p
WHERE p.unanswered_attempts >= 3
