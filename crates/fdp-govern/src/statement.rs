//! SQL text before it is run: the tables a query reads, and its named
//! parameters (`:as_at`) written in as literals. Shared by everything that
//! keeps a query to run later (federated questions, declared products), so
//! that they check and bind queries the same way.

use std::collections::BTreeSet;

use datafusion::prelude::SessionContext;

use crate::GovernError;

/// The tables `sql` (one statement) reads, by name, without its common
/// table expressions.
pub fn tables_read(sql: &str) -> Result<BTreeSet<String>, GovernError> {
    // No table is registered: the statement is only resolved, never planned.
    let state = SessionContext::new().state();
    let statement = state.sql_to_statement(sql, &datafusion::common::config::Dialect::Generic)?;
    let references = state.resolve_table_references(&statement)?;
    Ok(references.iter().map(|r| r.table().to_string()).collect())
}

/// `sql` with each named parameter (`:name`, outside quoted text, not a
/// `::` cast) replaced by `literal(name)`: the names a caller checks and
/// the literal it writes, so a value can never become SQL of its own.
pub fn bind_named(
    sql: &str,
    mut literal: impl FnMut(&str) -> Result<String, String>,
) -> Result<String, String> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = String::with_capacity(sql.len());
    let mut in_quotes = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        // Comments are copied as they are: a quote or a colon in one is
        // neither text nor a parameter.
        if !in_quotes && c == '-' && chars.get(i + 1) == Some(&'-') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(chars[i]);
                i += 1;
            }
            continue;
        }
        if !in_quotes && c == '/' && chars.get(i + 1) == Some(&'*') {
            let end = (i + 2..chars.len().saturating_sub(1))
                .find(|&j| chars[j] == '*' && chars[j + 1] == '/')
                .map_or(chars.len(), |j| j + 2);
            out.extend(&chars[i..end]);
            i = end;
            continue;
        }
        if c == '\'' {
            in_quotes = !in_quotes;
        }
        let starts_parameter = !in_quotes
            && c == ':'
            && chars
                .get(i + 1)
                .is_some_and(|n| n.is_ascii_alphabetic() || *n == '_')
            && (i == 0 || chars[i - 1] != ':');
        if !starts_parameter {
            out.push(c);
            i += 1;
            continue;
        }
        let mut j = i + 1;
        while j < chars.len() && (chars[j].is_ascii_alphanumeric() || chars[j] == '_') {
            j += 1;
        }
        let name: String = chars[i + 1..j].iter().collect();
        out.push_str(&literal(&name)?);
        i = j;
    }
    Ok(out)
}

/// The named parameters `sql` uses.
pub fn named_parameters(sql: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    // Binding each to itself finds them without a second scanner.
    let _ = bind_named(sql, |name| {
        names.insert(name.to_string());
        Ok(String::new())
    });
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_bound_outside_quotes_and_casts() {
        let sql = "-- the patient's stays since :not\nSELECT x::text, ':not' /* or :this */ FROM t WHERE d >= :since AND n = :n";
        assert_eq!(
            named_parameters(sql),
            BTreeSet::from(["since".to_string(), "n".to_string()])
        );
        let bound = bind_named(sql, |name| Ok(format!("<{name}>"))).unwrap();
        assert_eq!(
            bound,
            "-- the patient's stays since :not\nSELECT x::text, ':not' /* or :this */ FROM t WHERE d >= <since> AND n = <n>"
        );
        assert!(bind_named(sql, |name| Err(format!("no {name}"))).is_err());
    }

    #[test]
    fn the_tables_a_query_reads_leave_out_its_ctes() {
        let read = tables_read(
            "WITH w AS (SELECT * FROM ward_stay) SELECT * FROM w JOIN admission a ON true",
        )
        .unwrap();
        assert_eq!(
            read,
            BTreeSet::from(["ward_stay".to_string(), "admission".to_string()])
        );
        assert!(tables_read("SELEC").is_err());
    }
}
