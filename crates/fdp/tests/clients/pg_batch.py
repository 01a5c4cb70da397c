"""Run queries over the PostgreSQL wire protocol with psycopg, the way an
analyst's script would, and print every answer as JSON.

Reads from stdin: {"host": ..., "port": ..., "sessions": [{"user": ...,
"password": ..., "dbname": ..., "options": ..., "queries": [sql, ...]}]}.
Prints: [{"error": message} | {"results": [{"columns": [...], "rows":
[{column: value}]} | {"error": message}]}], one entry per session, with
dates as ISO text and decimals as numbers, as `fdp sql --format json` gives
them.
"""
import datetime
import decimal
import json
import sys

import psycopg


def plain(v):
    if isinstance(v, (datetime.date, datetime.datetime, datetime.time)):
        return v.isoformat()
    if isinstance(v, decimal.Decimal):
        return float(v)
    if isinstance(v, (bytes, memoryview)):
        return bytes(v).decode("utf-8", "replace")
    if isinstance(v, list):
        return [plain(x) for x in v]
    return v


request = json.load(sys.stdin)
out = []
for s in request["sessions"]:
    try:
        conn = psycopg.connect(
            host=request["host"],
            port=request["port"],
            user=s["user"],
            password=s["password"],
            dbname=s["dbname"],
            options=s.get("options", ""),
            sslmode="require",
            autocommit=True,
        )
    except psycopg.Error as e:
        out.append({"error": str(e)})
        continue
    results = []
    with conn:
        for q in s["queries"]:
            try:
                cur = conn.execute(q)
                columns = [d.name for d in cur.description]
                rows = [dict(zip(columns, map(plain, r))) for r in cur.fetchall()]
                results.append({"columns": columns, "rows": rows})
            except psycopg.Error as e:
                results.append({"error": str(e)})
    out.append({"results": results})
json.dump(out, sys.stdout)
