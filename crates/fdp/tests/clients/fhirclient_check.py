"""An off-the-shelf FHIR client (SMART on FHIR's `fhirclient`) against an
OpenFDP instance: reads the CapabilityStatement, creates, reads, updates and
searches resources, and parses every answer into the client's R4 models,
which refuse elements of the wrong type or name.

Usage: fhirclient_check.py BASE_URL TOKEN
"""
import sys

from fhirclient import client
from fhirclient.models.encounter import Encounter
from fhirclient.models.patient import Patient
from fhirclient.models.bundle import Bundle

base, token = sys.argv[1], sys.argv[2]
smart = client.FHIRClient(settings={"app_id": "openfdp-check", "api_base": base})
smart.server.session.headers["Authorization"] = f"Bearer {token}"
server = smart.server

capability = server.capabilityStatement
assert capability.fhirVersion == "4.0.1", capability.fhirVersion
assert any(r.type == "Patient" for r in capability.rest[0].resource)

patient = Patient({
    "resourceType": "Patient",
    "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765919"}],
    "name": [{"family": "Okafor", "given": ["Chidi"]}],
    "gender": "male",
    "birthDate": "1962-07-14",
})
created = patient.create(server)
assert created["resourceType"] == "Patient", created
pid = created["id"]

read = Patient.read(pid, server)
assert read.name[0].family == "Okafor"
assert read.meta.versionId == "1"
assert read.birthDate.isostring == "1962-07-14"

read.name[0].given = ["Chidi", "Emeka"]
read.update(server)
again = Patient.read(pid, server)
assert again.meta.versionId == "2", again.meta.versionId
assert again.name[0].given == ["Chidi", "Emeka"]

encounter = Encounter({
    "resourceType": "Encounter",
    "status": "in-progress",
    "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
    "subject": {"reference": f"Patient/{pid}"},
    "period": {"start": "2026-11-20T08:15:00Z"},
})
enc = encounter.create(server)
assert enc["subject"]["reference"] == f"Patient/{pid}"

found = Patient.where(struct={"family": "okaf"}).perform_resources(server)
assert [p.id for p in found] == [pid], [p.id for p in found]
bundle = Encounter.where(struct={"patient": pid, "status": "in-progress"}).perform(server)
assert isinstance(bundle, Bundle) and bundle.type == "searchset" and bundle.total == 1
assert bundle.entry[0].resource.period.start.isostring.startswith("2026-11-20T08:15:00")

# An invalid resource is refused with an OperationOutcome.
bad = Patient({"resourceType": "Patient",
               "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765918"}]})
try:
    bad.create(server)
    raise SystemExit("an NHS number failing modulus 11 was accepted")
except Exception as e:  # fhirclient raises requests' HTTPError
    response = getattr(e, "response", None)
    assert response is not None and response.status_code == 422, e
    assert response.json()["resourceType"] == "OperationOutcome"

print("fhirclient: capability, create, read, update, search, paging bundle and error all as expected")
