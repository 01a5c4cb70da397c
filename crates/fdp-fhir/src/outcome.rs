//! Problems with a resource, and the `OperationOutcome` that reports them.

use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Fatal,
    Error,
    Warning,
    Information,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Fatal => "fatal",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Information => "information",
        }
    }
}

/// The subset of the FHIR `issue-type` value set a server answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueCode {
    /// Not JSON, or not the shape of a resource.
    Structure,
    /// A required element is missing.
    Required,
    /// An element has a value of the wrong format.
    Value,
    /// A business rule fails (check digit, code system we cannot map).
    BusinessRule,
    /// A code is not in the code system or value set expected.
    CodeInvalid,
    NotFound,
    NotSupported,
    /// The policy does not allow it.
    Forbidden,
    Conflict,
    Processing,
    Invalid,
    Exception,
    Informational,
}

impl IssueCode {
    pub fn as_str(self) -> &'static str {
        match self {
            IssueCode::Structure => "structure",
            IssueCode::Required => "required",
            IssueCode::Value => "value",
            IssueCode::BusinessRule => "business-rule",
            IssueCode::CodeInvalid => "code-invalid",
            IssueCode::NotFound => "not-found",
            IssueCode::NotSupported => "not-supported",
            IssueCode::Forbidden => "forbidden",
            IssueCode::Conflict => "conflict",
            IssueCode::Processing => "processing",
            IssueCode::Invalid => "invalid",
            IssueCode::Exception => "exception",
            IssueCode::Informational => "informational",
        }
    }
}

/// One problem, located by a FHIRPath-style expression such as
/// `Patient.identifier[0].value` or `Bundle.entry[3].resource.birthDate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub severity: Severity,
    pub code: IssueCode,
    pub expression: Option<String>,
    pub diagnostics: String,
}

impl Issue {
    pub fn error(
        code: IssueCode,
        expression: impl Into<String>,
        diagnostics: impl Into<String>,
    ) -> Self {
        Issue {
            severity: Severity::Error,
            code,
            expression: Some(expression.into()),
            diagnostics: diagnostics.into(),
        }
    }

    pub fn warning(
        code: IssueCode,
        expression: impl Into<String>,
        diagnostics: impl Into<String>,
    ) -> Self {
        Issue {
            severity: Severity::Warning,
            ..Issue::error(code, expression, diagnostics)
        }
    }

    pub fn is_error(&self) -> bool {
        self.severity <= Severity::Error
    }

    /// The same issue located inside an enclosing element, e.g. a Bundle entry.
    pub fn within(mut self, prefix: &str) -> Self {
        self.expression = Some(match self.expression {
            Some(e) => match e.split_once('.') {
                // `Patient.birthDate` inside `Bundle.entry[2].resource`
                Some((_, rest)) => format!("{prefix}.{rest}"),
                None => prefix.to_string(),
            },
            None => prefix.to_string(),
        });
        self
    }

    /// One line for logs, quarantine reasons and command-line summaries.
    pub fn one_line(&self) -> String {
        match &self.expression {
            Some(e) => format!("{}: {}", e, self.diagnostics),
            None => self.diagnostics.clone(),
        }
    }
}

/// A list of issues, rendered as a FHIR `OperationOutcome`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OperationOutcome {
    pub issues: Vec<Issue>,
}

impl OperationOutcome {
    pub fn new(issues: Vec<Issue>) -> Self {
        OperationOutcome { issues }
    }

    pub fn single(issue: Issue) -> Self {
        OperationOutcome {
            issues: vec![issue],
        }
    }

    pub fn has_errors(&self) -> bool {
        self.issues.iter().any(Issue::is_error)
    }

    pub fn summary(&self) -> String {
        self.issues
            .iter()
            .map(Issue::one_line)
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub fn to_json(&self) -> Value {
        let issues: Vec<Value> = if self.issues.is_empty() {
            vec![json!({"severity": "information", "code": "informational", "diagnostics": "ok"})]
        } else {
            self.issues
                .iter()
                .map(|i| {
                    let mut v = json!({
                        "severity": i.severity.as_str(),
                        "code": i.code.as_str(),
                        "diagnostics": i.diagnostics,
                    });
                    if let Some(e) = &i.expression {
                        v["expression"] = json!([e]);
                    }
                    v
                })
                .collect()
        };
        json!({"resourceType": "OperationOutcome", "issue": issues})
    }
}
