"""An independent count of each shipped cohort: DuckDB over the Parquet files
of an instance's data directory, each cohort's rules written out here by
hand from its published definition (only the code lists are read from the
cohort files). The platform's counts must equal these.

Usage: cohort_reference.py DATA_DIR COHORTS_DIR REFERENCE_DATE
Prints JSON: {cohort: {"members": n, "outcomes": {name: n}}}.
"""
import calendar
import datetime as dt
import glob
import json
import os
import sys
import tomllib

import duckdb

data, cohorts, ref = sys.argv[1], sys.argv[2], dt.date.fromisoformat(sys.argv[3])


def months_before(d, months):
    """d moved back by whole months; a day the month lacks becomes its last."""
    y, m = divmod(d.year * 12 + (d.month - 1) - months, 12)
    m += 1
    return dt.date(y, m, min(d.day, calendar.monthrange(y, m)[1]))


def live_files(table_dir):
    """The Parquet files of a Delta table's latest version, from its log:
    every file added and not since removed."""
    live = {}
    logs = sorted(glob.glob(os.path.join(table_dir, "_delta_log", "*.json")))
    assert not glob.glob(os.path.join(table_dir, "_delta_log", "*.checkpoint*")), table_dir
    for log in logs:
        with open(log) as fh:
            for line in fh:
                action = json.loads(line)
                if "add" in action:
                    live[action["add"]["path"]] = True
                elif "remove" in action:
                    live.pop(action["remove"]["path"], None)
    return [os.path.join(table_dir, p) for p in live]


def parquet(table):
    files = []
    canonical = os.path.join(data, "tables", "canonical")
    for part in glob.glob(os.path.join(canonical, table + "@*")) + glob.glob(
        os.path.join(canonical, table)
    ):
        files += live_files(part)
    assert files, f"no Parquet files for {table}"
    return "read_parquet([" + ", ".join(f"'{f}'" for f in files) + "], union_by_name = true)"


con = duckdb.connect()
con.execute(
    f"""CREATE TABLE person AS SELECT person_id AS pid, date_of_birth AS dob,
        registered_gp, date_of_death FROM {parquet('patient')}"""
)
con.execute(
    f"""CREATE TABLE rec AS
        SELECT patient_id AS pid, diagnosis_snomed_ct_code AS code, diagnosis_start_date AS d
          FROM {parquet('patient_diagnosis')}
        UNION ALL
        SELECT patient_id, code, CAST(effective_timestamp AS DATE) FROM {parquet('observation')}
        UNION ALL
        SELECT patient_id, vaccination_procedure_code, CAST(occurrence_timestamp AS DATE)
          FROM {parquet('vaccination')} WHERE status = 'completed'"""
)
con.execute(
    f"""CREATE TABLE reg AS SELECT * FROM person
        WHERE registered_gp IS NOT NULL AND (date_of_death IS NULL OR date_of_death > DATE '{ref}')"""
)

value_sets = {}
for f in glob.glob(os.path.join(cohorts, "*.toml")):
    with open(f, "rb") as fh:
        for name, vs in tomllib.load(fh)["value_sets"].items():
            value_sets.setdefault(name, vs["codes"])
for name, codes in value_sets.items():
    con.execute(f"CREATE TABLE vs_{name} (code VARCHAR)")
    con.executemany(f"INSERT INTO vs_{name} VALUES (?)", [[c] for c in codes])


def latest(vs, since=None, after=None):
    """Per patient: the latest date of a code from vs up to the reference date."""
    cond = f"r.d <= DATE '{ref}'"
    if since:
        cond += f" AND r.d > DATE '{since}'"
    if after:
        cond += f" AND r.d >= DATE '{after}'"
    return f"(SELECT r.pid, max(r.d) AS d FROM rec r JOIN vs_{vs} v USING (code) WHERE {cond} GROUP BY r.pid)"


def count(sql):
    return con.execute(f"SELECT count(*) FROM ({sql})").fetchone()[0]


def ids(sql):
    return f"SELECT pid FROM ({sql})"


year_ago = months_before(ref, 12)
# QOF DM_REG: latest DM_COD, no DMRES_COD on or after it, 17 or over.
register = f"""
    SELECT reg.pid FROM reg
    JOIN {latest('DM_COD')} dm ON dm.pid = reg.pid
    LEFT JOIN {latest('DMRES_COD')} res ON res.pid = reg.pid
    WHERE (res.d IS NULL OR res.d < dm.d) AND reg.dob <= DATE '{months_before(ref, 17 * 12)}'"""


def had(vs, members, since=None, after=None):
    return f"SELECT m.pid FROM ({members}) m JOIN {latest(vs, since, after)} x ON x.pid = m.pid"


out = {}
out["qof-diabetes-register"] = {"members": count(register), "outcomes": {}}
out["diabetes-foot-check-overdue"] = {
    "members": count(f"{register} EXCEPT {had('FOOT_COD', register, since=year_ago)}"),
    "outcomes": {},
}
processes = {
    "BMI": "BMI_COD",
    "blood pressure": "BP_COD",
    "HbA1c": "HBA1C_COD",
    "cholesterol": "CHOL_COD",
    "smoking status": "SMOK_COD",
    "foot examination": "FOOT_COD",
    "urine albumin": "UACR_COD",
    "serum creatinine": "CRE_COD",
}
care = {name: count(had(vs, register, since=year_ago)) for name, vs in processes.items()}
all_eight = register
for vs in processes.values():
    all_eight = had(vs, all_eight, since=year_ago)
care["all eight"] = count(all_eight)
out["diabetes-care-processes"] = {"members": count(register), "outcomes": care}

# Flu 2026/27.
march = dt.date(2027, 3, 31)
august = dt.date(2026, 8, 31)
over_65 = f"SELECT pid FROM reg WHERE dob <= DATE '{months_before(march, 65 * 12)}'"
two_or_three = f"""SELECT pid FROM reg WHERE dob <= DATE '{months_before(august, 24)}'
                   AND dob > DATE '{months_before(august, 48)}'"""
diabetes_unresolved = f"""
    SELECT dm.pid FROM {latest('DM_COD')} dm LEFT JOIN {latest('DMRES_COD')} res ON res.pid = dm.pid
    WHERE res.d IS NULL OR res.d < dm.d"""
other_risk = f"SELECT pid FROM {latest('FLU_RISK_COD')}"
at_risk = f"""SELECT pid FROM reg WHERE dob <= DATE '{months_before(ref, 6)}'
              AND dob > DATE '{months_before(march, 65 * 12)}'
              AND pid IN ({diabetes_unresolved} UNION {other_risk})"""
pregnant = f"""
    SELECT reg.pid FROM reg JOIN {latest('PREG_COD', since=months_before(ref, 9))} p ON p.pid = reg.pid
    LEFT JOIN {latest('PREGDEL_COD')} e ON e.pid = reg.pid
    WHERE e.d IS NULL OR e.d < p.d"""
eligible = f"{over_65} UNION {two_or_three} UNION {at_risk} UNION {ids(pregnant)}"
out["flu-2026-27"] = {
    "members": count(eligible),
    "outcomes": {"vaccinated": count(had("FLUVAX_COD", eligible, after=dt.date(2026, 9, 1)))},
}


def mmr(low_months, high_months, by_months, doses):
    children = f"""SELECT pid, dob FROM reg WHERE dob <= DATE '{months_before(ref, low_months)}'
                   AND dob > DATE '{months_before(ref, high_months)}'"""
    given = f"""
        SELECT c.pid FROM ({children}) c JOIN rec r ON r.pid = c.pid JOIN vs_MMR_COD v USING (code)
        WHERE r.d <= DATE '{ref}' AND r.d <= c.dob + INTERVAL '{by_months} months'
        GROUP BY c.pid HAVING count(DISTINCT r.d) >= {doses}"""
    return children, given


children, first = mmr(24, 27, 24, 1)
out["mmr-24-months"] = {"members": count(children), "outcomes": {"MMR1 by 24 months": count(first)}}
children, first = mmr(60, 63, 60, 1)
_, second = mmr(60, 63, 60, 2)
out["mmr-5-years"] = {
    "members": count(children),
    "outcomes": {"MMR1 by 5 years": count(first), "MMR2 by 5 years": count(second)},
}
print(json.dumps(out, sort_keys=True))
