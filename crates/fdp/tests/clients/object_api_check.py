"""A client of the FDP object API that checks every exchange against NHS
England's published OpenAPI document for it.

Usage: object_api_check.py BASE_URL SPEC.yaml < calls.json

Each call on stdin is {"method", "path", "query", "body", "token",
"purpose"}. The request body is validated against the request schema the
document gives for that operation before it is sent (so the test itself
speaks the published API), and a 200 answer against the operation's
response schema. Prints, as JSON, one result per call: its status, its
body, the operation it matched, and any schema errors.
"""

import json
import re
import sys
import urllib.error
import urllib.parse
import urllib.request

import yaml
from openapi_schema_validator import OAS30Validator

base, spec_path = sys.argv[1], sys.argv[2]
loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
with open(spec_path) as f:
    spec = yaml.load(f, Loader=loader)
components = spec["components"]

# Each documented path as a pattern; the one with the most fixed text wins
# (…/Admission/count over …/Admission/{primaryKey}).
templates = []
for template, item in spec["paths"].items():
    pattern = "^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$"
    fixed = len(re.sub(r"\{[^/]+?\}", "", template))
    templates.append((re.compile(pattern), fixed, template, item))


def operation(method, path):
    found = [(fixed, t, item) for (p, fixed, t, item) in templates if p.match(path)]
    if not found:
        return None, None
    _, template, item = max(found, key=lambda f: f[0])
    return template, item.get(method.lower())


def errors(schema, instance):
    validator = OAS30Validator(dict(schema, components=components))
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
        for e in validator.iter_errors(instance)
    ]


results = []
for call in json.load(sys.stdin):
    method, path = call["method"], call["path"]
    template, op = operation(method, path)
    result = {"operation": op and op["operationId"], "schema_errors": []}
    if op is None:
        result["schema_errors"].append(f"{method} {path} is not in the published document")
    body = call.get("body")
    if op is not None and body is not None and "requestBody" in op:
        request_schema = op["requestBody"]["content"]["application/json"]["schema"]
        result["schema_errors"] += [f"request {e}" for e in errors(request_schema, body)]
    url = base + urllib.parse.quote(path)
    if call.get("query"):
        url += "?" + urllib.parse.urlencode(call["query"], doseq=True)
    headers = {"Authorization": f"Bearer {call['token']}"}
    if call.get("purpose"):
        headers["X-Purpose"] = call["purpose"]
    data = None
    if method != "GET":
        data = json.dumps(body if body is not None else {}).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            status, text = r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    result["status"] = status
    try:
        result["body"] = json.loads(text)
    except ValueError:
        result["body"] = text
    if status == 200 and op is not None:
        response_schema = op["responses"]["200"]["content"]["application/json"]["schema"]
        result["schema_errors"] += [
            f"response {e}" for e in errors(response_schema, result["body"])
        ]
    results.append(result)

json.dump(results, sys.stdout)
