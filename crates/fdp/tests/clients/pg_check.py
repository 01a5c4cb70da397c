"""psycopg, as an analyst's script or a notebook uses it, against an
OpenFDP instance's PostgreSQL endpoint: list the tables, run queries with
parameters as prepared statements (text and binary results), and cancel a
long query. Prints one line per check; exits non-zero on the first failure.

Usage: pg_check.py HOST PORT USER TOKEN
"""
import sys
import threading
import time

import psycopg
from psycopg import errors

host, port, user, token = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]


def connect(dbname="planning", **kw):
    return psycopg.connect(host=host, port=port, user=user, password=token,
                           dbname=dbname, sslmode="require", **kw)


with connect() as conn:
    tables = [r[0] for r in conn.execute(
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_schema = 'public' ORDER BY table_name")]
    assert "patient" in tables, tables
    print("tables:", ",".join(tables))

    # A parameterised query, prepared on the server and run twice.
    q = "SELECT count(*) AS n FROM encounter WHERE encounter_type = %s"
    classes = [r[0] for r in conn.execute(
        "SELECT DISTINCT encounter_type FROM encounter "
        "WHERE encounter_type IS NOT NULL ORDER BY 1")]
    assert classes, "no encounter classes"
    counts = {c: conn.execute(q, (c,), prepare=True).fetchone()[0] for c in classes}
    again = {c: conn.execute(q, (c,), prepare=True).fetchone()[0] for c in classes}
    assert counts == again, (counts, again)
    # Planning answers leave with disclosure control: no count from 1 to 7.
    for c, n in counts.items():
        assert n is None or n == 0 or (n >= 8 and n % 5 == 0), (c, n)
    print("prepared:", counts)

    # Binary results decode to the same values.
    with conn.cursor(binary=True) as cur:
        cur.execute("SELECT count(*) AS n, max(date_of_birth) AS latest FROM patient")
        n, latest = cur.fetchone()
    assert n >= 8 and n % 5 == 0, n
    # Under planning a date of birth is its year.
    assert isinstance(latest, int) and 1900 < latest < 2100, latest
    print("binary:", n, latest)

    # A number as a parameter.
    born = conn.execute(
        "SELECT count(*) FROM patient WHERE date_of_birth <= %s", (latest,)).fetchone()[0]
    assert born == n, (born, n)

    # Only queries run.
    try:
        conn.execute("CREATE TABLE x (a int)")
        raise AssertionError("CREATE TABLE ran")
    except errors.Error as e:
        assert "not allowed" in str(e), e
        conn.rollback()
    print("read-only: refused")

    # statement_timeout is honoured.
    slow = ("SELECT count(DISTINCT concat(a.observation_id, b.observation_id, "
            "c.observation_id)) FROM observation a CROSS JOIN observation b "
            "CROSS JOIN observation c")
    conn.execute("SET statement_timeout = 300")
    started = time.monotonic()
    try:
        conn.execute(slow)
        raise AssertionError("the slow query finished inside the timeout")
    except errors.QueryCanceled as e:
        assert "timeout" in str(e), e
        conn.rollback()
    assert time.monotonic() - started < 10
    conn.execute("SET statement_timeout = 0")
    print("statement timeout: cancelled")

# Cancellation from another thread, as a client's "stop" button does.
with connect(autocommit=True) as conn:
    timer = threading.Timer(0.5, conn.cancel_safe)
    timer.start()
    started = time.monotonic()
    try:
        conn.execute(slow)
        raise AssertionError("the slow query was not cancelled")
    except errors.QueryCanceled:
        pass
    elapsed = time.monotonic() - started
    assert elapsed < 10, elapsed
    # The connection is still usable.
    assert conn.execute("SELECT 1").fetchone()[0] == 1
    print(f"cancel: stopped after {elapsed:.2f} s")

# A sensitive purpose without its project is refused at connection.
try:
    connect(dbname="research")
    raise AssertionError("research without a project was let in")
except psycopg.OperationalError as e:
    assert "no role that is granted" in str(e) or "project" in str(e), e
print("ok")
