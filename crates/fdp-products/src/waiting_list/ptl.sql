-- The patient tracking list: every entry on the elective admission list
-- that has not been removed, with its RTT clock computed from the
-- pathway's activities as they stood on {as_at}. Nothing about the clock
-- is copied from the extract; the extract's own figures are shown beside
-- the computed ones, with why they differ.
--
-- Each activity is ordered by a key: its day, then its sequence within
-- the day, then its RTT status code (so the code of the first or last
-- activity can be read back from the key alone, modulo 100).
--
-- The activities are read twice, not once per question: a first pass
-- folds each pathway's facts (its last clock stop, latest activity, when
-- the patient was last reached, latest treatment, latest continuing
-- code), a second reads back only clock starts and unanswered contact
-- attempts, which need the first pass's answer. The list carries those
-- facts, so the validation rules ask them of the list rather than reading
-- every activity again. Status codes are compared as numbers, which is
-- cheaper than as text.
WITH activity AS (
    SELECT pathway_id,
           activity_date,
           activity_type,
           activity_outcome,
           CAST(rtt_status_code AS BIGINT) AS code,
           (activity_date - DATE '1970-01-01') * 100000
               + coalesce(activity_sequence, 0) * 100
               + CAST(rtt_status_code AS BIGINT) AS at_key
    FROM pathway_activity
    WHERE activity_date <= {as_at}
),
facts AS (
    SELECT pathway_id,
           max(CASE WHEN code BETWEEN 30 AND 36 THEN at_key END) AS stop_key,
           max(CASE WHEN code BETWEEN 30 AND 36 THEN activity_date END) AS stop_date,
           max(at_key) AS latest_key,
           max(activity_date) AS latest_date,
           count(*) AS activities,
           max(CASE WHEN activity_type = 'validation' AND activity_outcome = 'contacted'
                    THEN activity_date END) AS last_reached_date,
           max(CASE WHEN code BETWEEN 20 AND 21 THEN at_key END) AS continuing_key,
           max(CASE WHEN code BETWEEN 20 AND 21 THEN activity_date END) AS continuing_date,
           max(CASE WHEN code = 30 OR activity_type = 'procedure'
                    THEN activity_date END) AS latest_treatment_date,
           max(CASE WHEN code = 30 AND activity_outcome = 'discharged without treatment'
                    THEN activity_date END) AS coded_30_on_discharge_date
    FROM activity
    GROUP BY pathway_id
),
clock AS (
    -- The clock runs from the first clock start after the last stop (a
    -- second referral letter does not restart a running clock); with no
    -- start after it, the clock stopped at the last stop. Attempts to
    -- reach the patient count from the last time they answered. The join
    -- is on the pathway alone, the rest in the aggregates, so that every
    -- engine hashes it.
    SELECT f.pathway_id,
           min(CASE WHEN a.code BETWEEN 10 AND 12
                     AND a.at_key > coalesce(f.stop_key, -1000000000000) THEN a.at_key END) AS start_key,
           min(CASE WHEN a.code BETWEEN 10 AND 12
                     AND a.at_key > coalesce(f.stop_key, -1000000000000) THEN a.activity_date END) AS clock_start,
           count(CASE WHEN a.activity_type = 'validation' AND a.activity_outcome = 'no response'
                       AND a.activity_date > coalesce(f.last_reached_date, DATE '0001-01-01') THEN 1 END) AS unanswered_attempts,
           max(CASE WHEN a.activity_type = 'validation' AND a.activity_outcome = 'no response'
                     AND a.activity_date > coalesce(f.last_reached_date, DATE '0001-01-01') THEN a.activity_date END) AS last_attempt_date,
           max(f.stop_date) AS stop_date,
           max(f.latest_date) AS latest_date,
           max(f.stop_key) AS stop_key,
           max(f.latest_key) AS latest_key,
           max(f.activities) AS activities,
           max(f.last_reached_date) AS last_reached_date,
           max(f.continuing_key) AS continuing_key,
           max(f.continuing_date) AS continuing_date,
           max(f.latest_treatment_date) AS latest_treatment_date,
           max(f.coded_30_on_discharge_date) AS coded_30_on_discharge_date
    FROM facts f
    LEFT JOIN activity a ON a.pathway_id = f.pathway_id
        AND (a.code BETWEEN 10 AND 12
             OR (a.activity_type = 'validation' AND a.activity_outcome = 'no response'))
    GROUP BY f.pathway_id
),
signed_off AS (
    -- Changes a clinician signed off by {as_at}, applied over the extract
    -- so that the next day's extract does not undo them: a removal takes
    -- the entry off the list; the latest change of priority replaces the
    -- extract's.
    SELECT eal_id,
           min(CASE WHEN removed THEN removal_date END) AS removed_on,
           max(CASE WHEN property_to_modify = 'priorityType'
                    THEN CAST(closed_at AS VARCHAR) || '|' || new_value END) AS priority_change
    FROM validated_changelog
    WHERE validated = 'yes' AND CAST(closed_at AS DATE) <= {as_at}
    GROUP BY eal_id
),
entry AS (
    SELECT e.eal_id,
           e.pathway_id,
           e.patient_id,
           {patient_name} AS patient_name,
           coalesce(p.specialty_name, n.specialty_name) AS specialty,
           coalesce(p.consultant_name, n.primary_consultant_name) AS consultant,
           n.intended_primary_procedure_code AS procedure_code,
           n.estimated_total_theatre_time AS expected_theatre_minutes,
           coalesce(split_part(so.priority_change, '|', 2), e.priority_type) AS priority_type,
           e.decided_to_admit_date,
           e.planned_date,
           e.latest_clinically_appropriate_date,
           c.start_key,
           c.stop_key,
           c.latest_key,
           c.latest_date AS rtt_status_date,
           c.clock_start AS rtt_period_start_date,
           CASE WHEN c.start_key IS NULL THEN c.stop_date END AS rtt_period_end_date,
           coalesce(e.rtt_days_paused, 0) AS rtt_days_paused,
           {as_at} - c.clock_start - coalesce(e.rtt_days_paused, 0) AS rtt_period_length,
           c.activities,
           c.last_reached_date,
           c.unanswered_attempts,
           c.last_attempt_date,
           c.latest_treatment_date,
           c.continuing_key,
           c.continuing_date AS latest_continuing_date,
           c.coded_30_on_discharge_date,
           p.patient_deceased,
           p.treatment_function_code,
           e.rtt_period_start_date AS extract_rtt_period_start_date,
           e.rtt_status_code AS extract_rtt_status_code,
           e.rtt_weeks_waiting AS extract_rtt_weeks_waiting
    -- Every join is nested so that its hash table is built from a table
    -- or an aggregate, never from another join's output: a join's output
    -- batches share their inputs' string buffers, and building from them
    -- copies those buffers once per batch, which grows with the square of
    -- the list (a million entries took a minute). The narrow tables are
    -- joined first and the clock, the widest, last, so that the fewest
    -- columns are carried through each join.
    FROM clock c
    RIGHT JOIN (signed_off so
        RIGHT JOIN (encounter n
            RIGHT JOIN (patient_pathway p
                RIGHT JOIN eal_entry e
                ON p.pathway_id = e.pathway_id)
            ON n.eal_id = e.eal_id)
        ON so.eal_id = e.eal_id)
    ON c.pathway_id = e.pathway_id
    WHERE (e.removal_date IS NULL OR e.removal_date > {as_at})
      AND so.removed_on IS NULL
),
turn AS (
    -- Treated in turn: a booked patient ahead of anyone of the same
    -- priority and procedure who has waited longer and is not booked
    -- sooner. Rows of the same start day are ordered by booking, so a
    -- frame of the rows before this one holds every longer waiter, and
    -- same-day rows only where they are booked no later, which cannot
    -- flag it: a rows frame, where a range frame searches for its bounds
    -- row by row. The order is one number, the start day then the
    -- booking day (the days from year 1 to 9999 span under ten million),
    -- which sorts faster than two; and the window runs before
    -- the codes read from the clock's keys are written out as text, so
    -- that it sorts as few and as narrow columns as it can.
    SELECT entry.*,
           max(CASE WHEN start_key IS NOT NULL THEN coalesce(planned_date, DATE '9999-12-31') END)
               OVER (PARTITION BY priority_type, procedure_code
                     ORDER BY (rtt_period_start_date - DATE '1970-01-01') * 10000000
                              + (coalesce(planned_date, DATE '9999-12-31') - DATE '1970-01-01')
                     ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS longer_waiters_booking
    FROM entry
),
paused AS (
    -- Days paused move every breach date; almost always none.
    SELECT turn.*,
           CASE WHEN start_key IS NOT NULL THEN 'running'
                WHEN stop_key IS NOT NULL THEN 'stopped'
                ELSE 'no clock' END AS clock,
           CAST(latest_key % 100 AS VARCHAR) AS rtt_status_code,
           CAST(start_key % 100 AS VARCHAR) AS clock_start_code,
           CASE WHEN start_key IS NULL THEN CAST(stop_key % 100 AS VARCHAR) END AS clock_stop_code,
           CAST(continuing_key % 100 AS VARCHAR) AS latest_continuing_code,
           CASE WHEN rtt_days_paused = 0 THEN rtt_period_start_date
                ELSE CAST(rtt_period_start_date
                          + CAST(CAST(rtt_days_paused AS VARCHAR) || ' days' AS INTERVAL) AS DATE)
           END AS breach_base
    FROM turn
),
waits AS (
    SELECT paused.*,
           CAST(floor(rtt_period_length / 7.0) AS BIGINT) AS rtt_weeks_waiting,
           -- A breach date is the day the wait reaches that many whole
           -- weeks; a clock still running after it has breached.
           CAST(breach_base + INTERVAL '126 days' AS DATE) AS date_of_18_week_rtt_breach,
           CAST(breach_base + INTERVAL '364 days' AS DATE) AS date_of_52_week_rtt_breach,
           CAST(breach_base + INTERVAL '455 days' AS DATE) AS date_of_65_week_rtt_breach,
           CAST(breach_base + INTERVAL '546 days' AS DATE) AS rtt_period_78_week_breach_date,
           CAST(breach_base + INTERVAL '728 days' AS DATE) AS rtt_period_104_week_breach_date,
           -- Clinical priority's time limit runs from the decision to
           -- admit; a P1 without its sub-level is held to the stricter.
           CASE WHEN priority_type IN ('P1a', 'P1') THEN CAST(decided_to_admit_date + INTERVAL '1 day' AS DATE)
                WHEN priority_type = 'P1b' THEN CAST(decided_to_admit_date + INTERVAL '3 days' AS DATE)
                WHEN priority_type = 'P2' THEN CAST(decided_to_admit_date + INTERVAL '28 days' AS DATE)
                WHEN priority_type = 'P3' THEN CAST(decided_to_admit_date + INTERVAL '3 months' AS DATE)
           END AS priority_due_date
    FROM paused
)
SELECT eal_id,
       pathway_id,
       patient_id,
       patient_name,
       specialty,
       consultant,
       procedure_code,
       expected_theatre_minutes,
       priority_type,
       decided_to_admit_date,
       planned_date,
       latest_clinically_appropriate_date,
       clock,
       rtt_status_code,
       rtt_status_date,
       rtt_period_start_date,
       clock_start_code,
       rtt_period_end_date,
       clock_stop_code,
       rtt_days_paused,
       rtt_period_length,
       rtt_weeks_waiting,
       CASE WHEN rtt_weeks_waiting IS NULL THEN NULL
            WHEN rtt_weeks_waiting < 18 THEN '00-17 weeks'
            WHEN rtt_weeks_waiting < 52 THEN '18-51 weeks'
            WHEN rtt_weeks_waiting < 65 THEN '52-64 weeks'
            WHEN rtt_weeks_waiting < 78 THEN '65-77 weeks'
            WHEN rtt_weeks_waiting < 104 THEN '78-103 weeks'
            ELSE '104+ weeks' END AS rtt_time_bands,
       date_of_18_week_rtt_breach,
       date_of_18_week_rtt_breach - {as_at} AS days_to_18_week_rtt_breach,
       date_of_52_week_rtt_breach,
       date_of_52_week_rtt_breach - {as_at} AS days_to_52_week_rtt_breach,
       date_of_65_week_rtt_breach,
       date_of_65_week_rtt_breach - {as_at} AS days_to_65_week_rtt_breach,
       rtt_period_78_week_breach_date,
       rtt_period_78_week_breach_date - {as_at} AS rtt_period_days_to_78_week_breach,
       rtt_period_104_week_breach_date,
       rtt_period_104_week_breach_date - {as_at} AS rtt_period_days_to_104_week_breach,
       date_of_18_week_rtt_breach - {as_at} BETWEEN 0 AND 69 AS less_than_10_weeks_to_rtt_breach,
       rtt_weeks_waiting >= 68 AS rtt_period_is_68_week_waiter,
       rtt_weeks_waiting >= 94 AS rtt_period_is_94_week_waiter,
       priority_due_date,
       clock = 'running' AND {as_at} > priority_due_date AS past_priority_limit,
       coalesce(clock = 'running' AND planned_date IS NOT NULL
                AND longer_waiters_booking > planned_date, false) AS booked_out_of_turn,
       extract_rtt_period_start_date,
       extract_rtt_status_code,
       extract_rtt_weeks_waiting,
       last_reached_date,
       unanswered_attempts,
       last_attempt_date,
       latest_treatment_date,
       latest_continuing_code,
       latest_continuing_date,
       coded_30_on_discharge_date,
       patient_deceased,
       treatment_function_code,
       CASE WHEN clock = 'no clock'
                THEN 'no activity on the pathway by this date to compute the clock from'
            WHEN clock = 'stopped' AND extract_rtt_status_code IS NOT NULL
                 AND extract_rtt_status_code NOT IN ('30', '31', '32', '33', '34', '35', '36')
                THEN 'the clock stopped on ' || CAST(rtt_period_end_date AS VARCHAR)
                     || ' (code ' || clock_stop_code || '); the extract still counts it as waiting'
            WHEN extract_rtt_period_start_date IS NOT NULL
                 AND extract_rtt_period_start_date <> rtt_period_start_date
                THEN CASE clock_start_code
                         WHEN '11' THEN 'the clock restarted after active monitoring on '
                         WHEN '12' THEN 'a new clock started on '
                         ELSE 'the first clock start is on ' END
                     || CAST(rtt_period_start_date AS VARCHAR)
                     || '; the extract counts from ' || CAST(extract_rtt_period_start_date AS VARCHAR)
            WHEN extract_rtt_weeks_waiting IS NOT NULL AND extract_rtt_weeks_waiting <> rtt_weeks_waiting
                THEN 'the extract gives ' || CAST(extract_rtt_weeks_waiting AS VARCHAR)
                     || ' weeks waited, counted on another day'
       END AS extract_disagrees
FROM waits
