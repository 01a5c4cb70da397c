//! A product's view of records it holds itself (the live census): the
//! policy's row rules and column actions, read from the same grant a
//! governed session compiles into each table's plan.

use super::*;

impl Governance {
    /// A product's view for `req` (the bed board reads the live census, not
    /// the tables): allowed only where the grant covers every table in
    /// `tables` for this principal's organisation, and then each field is
    /// shown or hidden as [`ProductView::action`] says, from the same policy
    /// the tables' views are compiled from. The refusal is audited; an
    /// allowed view is audited by [`ProductView::served`].
    pub fn product_view(
        &self,
        req: &SessionRequest,
        tables: &[&str],
        what: &str,
    ) -> Result<ProductView, GovernError> {
        self.view(req, tables, Need::Read, what)
    }

    /// A change to care records through a product (discharge readiness, a
    /// bed's status): like [`Self::product_view`], and only for direct care
    /// or operations: planning and research read, they never change records.
    pub fn change_view(
        &self,
        req: &SessionRequest,
        tables: &[&str],
        what: &str,
    ) -> Result<ProductView, GovernError> {
        self.view(req, tables, Need::Change, what)
    }

    /// A view of records as received (what the feeds refused, kept in
    /// quarantine), for roles the policy grants the raw layer under the
    /// purpose. Audited like [`Self::product_view`].
    pub fn raw_records_view(
        &self,
        req: &SessionRequest,
        what: &str,
    ) -> Result<ProductView, GovernError> {
        self.view(req, &[], Need::Raw, what)
    }

    pub(super) fn view(
        &self,
        req: &SessionRequest,
        tables: &[&str],
        need: Need,
        what: &str,
    ) -> Result<ProductView, GovernError> {
        let mut entry = AuditEntry::for_request(req, what);
        entry.policy = Some(self.policy.digest.clone());
        let decided = self.check(req).and_then(|(role, grant)| {
            entry.role = Some(role.to_string());
            let own = self.acts_for_us(req);
            let refuse = |reason: String| {
                Err(Refusal::ProductRefused {
                    role: role.to_string(),
                    purpose: req.purpose,
                    reason,
                })
            };
            if grant.rows.own_organisation_only && !own {
                return refuse(format!("it sees only {}'s records", self.organisation));
            }
            if let Some(t) = tables.iter().find(|t| !grant.objects.covers(t)) {
                return refuse(format!("`{t}` is not granted"));
            }
            if need == Need::Raw && !grant.raw {
                return refuse("records as received (raw) are not granted".into());
            }
            if need == Need::Change {
                if req.purpose.is_secondary() {
                    return refuse(CHANGED_FOR_CARE_ONLY.into());
                }
                if let Some(t) = tables.iter().find(|t| !grant.change.covers(t)) {
                    return refuse(format!("changing `{t}` is not granted"));
                }
            }
            entry.objects = tables.iter().map(|t| t.to_string()).collect();
            Ok(grant.clone())
        });
        let opted_out = match (&decided, req.purpose.is_secondary()) {
            (Ok(_), true) => self.opt_out.nhs_numbers()?,
            _ => Default::default(),
        };
        match decided {
            Ok(grant) => Ok(ProductView {
                grant,
                model: self.model,
                keystore: self.keystore.clone(),
                key: std::sync::OnceLock::new(),
                purpose: req.purpose,
                project: req
                    .project
                    .clone()
                    .unwrap_or_else(|| req.purpose.as_str().to_string()),
                opted_out,
                row_level: !(req.purpose.is_secondary() && req.leaves_instance()),
                read: RecordRead {
                    audit: self.audit.clone(),
                    entry,
                },
            }),
            Err(e) => self.refuse(entry, e),
        }
    }
}

/// A product's view allowed by the policy: what it may show of each field.
///
/// A product shows records it holds itself (the bed board reads the live
/// census, not the tables), so the view gives it the policy's rules to
/// apply: [`Self::admits`] for each record, [`Self::field`] for each value
/// by the model column it comes from, [`Self::row_level`] for whether any
/// patient's record may be shown at all. They are the rules a governed
/// session compiles into each table's plan, read from the same grant.
#[must_use = "the view is audited only when `served` is called"]
pub struct ProductView {
    grant: crate::policy::Grant,
    model: &'static Model,
    keystore: Keystore,
    /// The purpose's pseudonym key, read from the keystore once per view
    /// rather than for every value (a live board shapes every occupant on
    /// every change).
    key: std::sync::OnceLock<Option<PseudonymKey>>,
    purpose: Purpose,
    project: String,
    /// The national data opt-out, for a secondary purpose; empty otherwise.
    opted_out: Arc<BTreeSet<String>>,
    row_level: bool,
    read: RecordRead,
}

/// What a product knows of one record it would show, for the view's row
/// rules. What it does not know is `None`: a rule on it cannot pass.
#[derive(Debug, Default, Clone, Copy)]
pub struct RowFacts<'a> {
    /// The site's name (the tables' `site_name`).
    pub site: Option<&'a str>,
    /// The ward's code (the tables' `ward`).
    pub ward: Option<&'a str>,
    /// The restricted-view groups the record is in (`rv_group_ids`).
    pub rv_groups: &'a [String],
    /// The patient's NHS number, for the national data opt-out.
    pub nhs_number: Option<&'a str>,
}

impl ProductView {
    /// Whether a record passes the view's row rules: the sites and wards
    /// granted, the restricted-view groups, and for a secondary purpose the
    /// national data opt-out. A record a rule names but the product cannot
    /// place (no site, say, where the grant lists sites) does not pass.
    pub fn admits(&self, row: &RowFacts) -> bool {
        let rows = &self.grant.rows;
        let within = |granted: &Option<Vec<String>>, v: Option<&str>| match granted {
            None => true,
            Some(list) => v.is_some_and(|v| list.iter().any(|g| g == v)),
        };
        let unrestricted =
            row.rv_groups.is_empty() || row.rv_groups.iter().any(|g| rows.rv_groups.contains(g));
        let opted_out = row.nhs_number.is_some_and(|n| {
            let digits: String = n.chars().filter(|c| !c.is_whitespace()).collect();
            self.opted_out.contains(&digits)
        });
        within(&rows.sites, row.site) && within(&rows.wards, row.ward) && unrestricted && !opted_out
    }

    /// Whether patients' records may be shown one by one: not for a
    /// secondary purpose on a channel that leaves the instance, where only
    /// aggregates leave (as for SQL; see `behind`).
    pub fn row_level(&self) -> bool {
        self.row_level
    }

    /// This view, for a product that shows patients one by one (a bed
    /// board, an admission): refused, and the refusal audited, where
    /// [`Self::row_level`] says records may not leave one by one.
    pub fn one_by_one(self, product: &str) -> Result<ProductView, GovernError> {
        if self.row_level {
            return Ok(self);
        }
        let why = format!(
            "{product} shows patients one by one, and under {} only aggregates leave the instance (ask one through SQL)",
            self.purpose.as_str()
        );
        Err(self.refuse(&why))
    }

    /// Refuse what the product was about to show (a record the row rules
    /// do not admit, say), audited as refused; the error to answer with.
    pub fn refuse(self, reason: &str) -> GovernError {
        let refusal = Refusal::ProductRefused {
            role: self.read.entry.role.clone().unwrap_or_default(),
            purpose: self.purpose,
            reason: reason.to_string(),
        };
        let mut entry = self.read.entry.clone();
        entry.outcome = format!("refused: {refusal}");
        if let Err(e) = self.read.audit.append(entry) {
            return e.into();
        }
        GovernError::Refused(refusal)
    }

    /// `value`, of the model's `table.column`, as this view may show it:
    /// as it is, masked, pseudonymised with the purpose's key, generalised
    /// (a year, an age band, a postcode district), or `None` where the
    /// policy removes it (or the value is missing).
    pub fn field(&self, table: &str, column: &str, value: Option<&str>) -> Option<String> {
        let value = value?;
        match self.action(table, column) {
            Action::Show => Some(value.to_string()),
            Action::Remove => None,
            Action::Mask => Some("[masked]".into()),
            Action::Pseudonymise => self
                .key
                .get_or_init(|| {
                    self.keystore
                        .pseudonym_key(self.purpose, &self.project)
                        .map_err(
                            |e| tracing::error!(error = %e, "no pseudonym key for a product view"),
                        )
                        .ok()
                })
                .as_ref()
                .map(|k| k.pseudonym(value)),
            Action::Year => value.get(..4).map(str::to_string),
            Action::Month => value.get(..7).map(|month| format!("{month}-01")),
            Action::AgeBand => value.parse::<i64>().ok().map(crate::udf::band),
            Action::District => crate::udf::outward_code(value),
        }
    }

    /// [`Self::field`] for a number: shown as it is, or removed (a number
    /// is never masked or pseudonymised into text).
    pub fn number<T>(&self, table: &str, column: &str, value: Option<T>) -> Option<T> {
        match self.action(table, column) {
            Action::Show => value,
            _ => None,
        }
    }

    /// What the policy does with `table.column` for this view; a column of
    /// a table not granted, or one the model does not know, is removed.
    pub fn action(&self, table: &str, column: &str) -> Action {
        if !self.grant.objects.covers(table) {
            return Action::Remove;
        }
        match self
            .model
            .object_type_by_table(table)
            .and_then(|o| o.property_by_column(column))
        {
            Some(p) => self.grant.action(table, column, p.sensitivity),
            None => Action::Remove,
        }
    }

    /// Whether the grant covers `table` at all.
    pub fn reads(&self, table: &str) -> bool {
        self.grant.objects.covers(table)
    }

    /// The purpose the view is for.
    pub fn purpose(&self) -> Purpose {
        self.purpose
    }

    /// Whether records as received (the raw layer) are granted.
    pub fn raw(&self) -> bool {
        self.grant.raw
    }

    /// Whether `table.column` is shown as it is.
    pub fn shows(&self, table: &str, column: &str) -> bool {
        self.action(table, column) == Action::Show
    }

    /// Whether every column of `table` is shown as it is: what a whole
    /// record filling it (a FHIR resource in a referral) needs, since a
    /// record cannot be shown with a field masked (as for
    /// [`Governance::whole_records`]).
    pub fn shows_whole(&self, table: &str) -> bool {
        self.model
            .object_type_by_table(table)
            .is_some_and(|o| o.properties.iter().all(|p| self.shows(table, &p.column)))
    }

    /// Audit what was served (a view that keeps serving, like a live
    /// stream, may record more than once).
    pub fn served(&self, records: u64, patients: Vec<String>) -> Result<(), GovernError> {
        self.read.record(records, patients)
    }

    /// Audit a change made through the product (kind `change`).
    pub fn changed(&self, patients: Vec<String>) -> Result<(), GovernError> {
        self.read.record_as(Some("change"), 1, patients)
    }
}
