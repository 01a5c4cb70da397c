-- Each theatre's sessions between :from and :to: how many, how many
-- cancelled, and how much of the planned time the sessions that ran used.
SELECT theatre_name,
       count(*) AS sessions,
       count(*) FILTER (WHERE cancelled) AS cancelled,
       sum(planned_session_minutes) FILTER (WHERE NOT coalesce(cancelled, false)) AS planned_minutes,
       sum(actual_utilised_minutes) FILTER (WHERE NOT coalesce(cancelled, false)) AS used_minutes,
       round(100.0 * sum(actual_utilised_minutes) FILTER (WHERE NOT coalesce(cancelled, false))
             / nullif(sum(planned_session_minutes) FILTER (WHERE NOT coalesce(cancelled, false)), 0), 1)
           AS utilisation_percent
FROM theatre_session
WHERE date BETWEEN :from AND :to
GROUP BY theatre_name
ORDER BY theatre_name
