//! Whole records read or changed under direct care (the FHIR API, a
//! product's write-back): what the policy allows of each, and the audit
//! entry made once they are served or changed.

use super::*;

impl Governance {
    /// May `req` be given whole records as received (FHIR resources) that
    /// fill the canonical object types `object_types`? Only where the policy
    /// would show every column of each of them, on every row: a resource
    /// cannot be served with a column masked or a row filtered out, so a
    /// grant that would do either is refused here rather than widened.
    /// Records of no object type need the raw layer granted. The refusal is
    /// audited; an allowed read is audited by [`RecordRead::served`].
    pub fn whole_records(
        &self,
        req: &SessionRequest,
        object_types: &[&str],
        what: &str,
    ) -> Result<RecordRead, GovernError> {
        let mut entry = AuditEntry::for_request(req, what);
        entry.policy = Some(self.policy.digest.clone());
        let decided = self.check(req).and_then(|(role, grant)| {
            entry.role = Some(role.to_string());
            let refuse = |reason: String| {
                Err(Refusal::WholeRecordsRefused {
                    role: role.to_string(),
                    purpose: req.purpose,
                    reason,
                })
            };
            let own = self.acts_for_us(req);
            if grant.rows.own_organisation_only && !own {
                return refuse(format!("it sees only {}'s records", self.organisation));
            }
            if object_types.is_empty() && !grant.raw {
                return refuse("these records fill no canonical object type, and records as received (raw) are not granted".into());
            }
            for name in object_types {
                let Some(object) = self.model.object_type(name) else {
                    return refuse(format!("{name} is not in the canonical model"));
                };
                let table = object.table.as_str();
                if !grant.objects.covers(table) {
                    return refuse(format!("`{table}` is not granted"));
                }
                if grant.rows.sites.is_some() || grant.rows.wards.is_some() {
                    return refuse(format!("`{table}` is granted for some sites or wards only"));
                }
                if let Some(p) = object
                    .properties
                    .iter()
                    .find(|p| grant.action(table, &p.column, p.sensitivity) != Action::Show)
                {
                    return refuse(format!(
                        "`{table}.{}` is not shown ({})",
                        p.column,
                        grant.action(table, &p.column, p.sensitivity)
                    ));
                }
                entry.objects.push(table.to_string());
            }
            Ok(role.to_string())
        });
        match decided {
            Ok(_) => Ok(RecordRead {
                audit: self.audit.clone(),
                entry,
            }),
            Err(e) => self.refuse(entry, e),
        }
    }

    /// May `req` create, change or delete whole records (FHIR resources)
    /// that fill the canonical object types `object_types`? Only for direct
    /// care or operations, for the instance's own organisation, where the
    /// grant's `change` covers each of them on every row: a write cannot be
    /// kept to some sites or wards. Records of no object type (or of any
    /// type, as an undeclared bulk import) need `change = ["*"]`. The
    /// refusal is audited; an allowed change is audited, with its patients,
    /// by [`RecordChange::changed`].
    pub fn change_records(
        &self,
        req: &SessionRequest,
        object_types: &[&str],
        what: &str,
    ) -> Result<RecordChange, GovernError> {
        let mut entry = AuditEntry::for_request(req, what);
        entry.kind = "change".into();
        entry.policy = Some(self.policy.digest.clone());
        let decided = self.check(req).and_then(|(role, grant)| {
            entry.role = Some(role.to_string());
            let refuse = |reason: String| {
                Err(Refusal::ChangeRefused {
                    role: role.to_string(),
                    purpose: req.purpose,
                    reason,
                })
            };
            if req.purpose.is_secondary() {
                return refuse(
                    CHANGED_FOR_CARE_ONLY.into(),
                );
            }
            let own = self.acts_for_us(req);
            if !own {
                return refuse(format!("only {}'s own staff change its records", self.organisation));
            }
            if grant.rows.sites.is_some() || grant.rows.wards.is_some() {
                return refuse("the grant covers some sites or wards only, and a whole record is not kept to them".into());
            }
            if object_types.is_empty() && grant.change != Objects::All {
                return refuse("these records may be of any type, or fill no canonical object type, and only change = [\"*\"] covers them".into());
            }
            for name in object_types {
                let Some(object) = self.model.object_type(name) else {
                    return refuse(format!("{name} is not in the canonical model"));
                };
                let table = object.table.as_str();
                if !grant.change.covers(table) {
                    return refuse(format!("changing `{table}` is not granted"));
                }
                entry.objects.push(table.to_string());
            }
            Ok(())
        });
        match decided {
            Ok(()) => Ok(RecordChange(RecordRead {
                audit: self.audit.clone(),
                entry,
            })),
            Err(e) => self.refuse(entry, e),
        }
    }
}

/// A read of whole records the policy allowed, to be audited once served.
#[must_use = "the read is audited only when `served` is called"]
pub struct RecordRead {
    pub(super) audit: Arc<AuditLog>,
    pub(super) entry: AuditEntry,
}

impl RecordRead {
    /// Audit what was served: how many records, and the patients they name.
    pub fn served(self, records: u64, patients: Vec<String>) -> Result<(), GovernError> {
        self.record(records, patients)
    }

    pub(super) fn record(&self, records: u64, patients: Vec<String>) -> Result<(), GovernError> {
        self.record_as(None, records, patients)
    }

    pub(super) fn record_as(
        &self,
        kind: Option<&str>,
        records: u64,
        patients: Vec<String>,
    ) -> Result<(), GovernError> {
        let mut entry = self.entry.clone();
        if let Some(k) = kind {
            entry.kind = k.to_string();
        }
        entry.rows = Some(records);
        entry.patients = patients;
        entry.outcome = "ok".into();
        self.audit.append(entry)?;
        Ok(())
    }
}

/// A change to whole records the policy allowed, to be audited once made.
#[must_use = "the change is audited only when `changed` is called"]
pub struct RecordChange(RecordRead);

impl RecordChange {
    /// Audit what was changed (its entry is of kind `change`): how many
    /// records, and the patients they are about. A change that cannot be
    /// audited must be reported as failed.
    pub fn changed(&self, records: u64, patients: Vec<String>) -> Result<(), GovernError> {
        self.0.record(records, patients)
    }
}
