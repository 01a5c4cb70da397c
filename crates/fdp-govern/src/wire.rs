//! The PostgreSQL wire protocol over governed sessions.
//!
//! A connection is authenticated and its session opened by the server that
//! accepts it (see `fdp-server`'s `pgwire` module), which then [`attach`]es
//! the [`GovernedSession`] to the connection. From then on every statement
//! the client sends is answered here: planned in the session's context
//! (which holds only the policy's views, plus `pg_catalog` and
//! `information_schema` describing them, so psql, psycopg and BI tools can
//! list what the principal may read), and run through
//! [`GovernedSession::query`] or [`GovernedSession::execute`], so disclosure
//! control and the audit apply exactly as they do to `POST /sql`.
//!
//! Only queries run. `SET` of the session settings PostgreSQL clients send
//! (date style, time zone, statement timeout, …), `SHOW` and transaction
//! statements get the answers clients expect; any other `SET` is accepted and
//! ignored (it could otherwise change the engine's configuration), and
//! anything that would create or change data is refused.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::Expr;
use datafusion::sql::sqlparser::ast::{Set, Statement};
use datafusion_postgres::arrow_pg::datatypes::df::deserialize_parameters_with_server_types;
use datafusion_postgres::arrow_pg::datatypes::{
    arrow_schema_to_pg_fields, encode_recordbatch, into_pg_type,
};
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_postgres::datafusion_pg_catalog::setup_pg_catalog;
use datafusion_postgres::datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::QueryHook;
use futures::{stream, Sink, StreamExt};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::types::format::FormatOptions;

use crate::session::{GovernError, GovernedSession, QueryResult};

/// The catalog the session's tables are in; also the database name clients
/// see in `pg_catalog`.
const CATALOG: &str = "datafusion";

/// Session settings PostgreSQL clients set on connecting, answered as
/// PostgreSQL would. Any other `SET` is accepted and ignored.
const CLIENT_SETTINGS: &[&str] = &[
    "statement_timeout",
    "datestyle",
    "bytea_output",
    "intervalstyle",
    "application_name",
    "extra_float_digits",
    "search_path",
];

/// A connection's governed session.
struct WireSession {
    session: GovernedSession,
    parser: PostgresCompatibilityParser,
}

/// Put `session` behind the connection `client`: from now on its statements
/// run in that session. Adds `pg_catalog` to the session so clients can
/// list its tables.
pub fn attach<C: ClientInfo + ?Sized>(
    client: &C,
    session: GovernedSession,
) -> Result<(), GovernError> {
    setup_pg_catalog(session.context(), CATALOG, EmptyContextProvider).map_err(|e| *e)?;
    client.session_extensions().insert(WireSession {
        session,
        parser: PostgresCompatibilityParser::new(),
    });
    Ok(())
}

fn session_of<C: ClientInfo + ?Sized>(client: &C) -> PgWireResult<Arc<WireSession>> {
    client
        .session_extensions()
        .get::<WireSession>()
        .ok_or_else(|| {
            user_error(
                "FATAL",
                "28000",
                "the connection has no session: authenticate first".into(),
            )
        })
}

fn user_error(severity: &str, code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        severity.to_string(),
        code.to_string(),
        message,
    )))
}

/// A governance or query error as PostgreSQL reports one: refusals as
/// `insufficient_privilege`, planning errors with the engine's message.
fn wire_error(e: GovernError) -> PgWireError {
    match e {
        GovernError::Refused(r) => user_error("ERROR", "42501", r.to_string()),
        GovernError::Query(q) => user_error("ERROR", "42000", q.to_string()),
        GovernError::Arrow(a) => user_error("ERROR", "22000", a.to_string()),
        other => user_error("ERROR", "58000", other.to_string()),
    }
}

fn read_only_refusal(statement: &Statement) -> PgWireError {
    let first = statement
        .to_string()
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_uppercase();
    user_error(
        "ERROR",
        "25006",
        format!(
            "{first} is not allowed: a governed session runs queries (SELECT, WITH, EXPLAIN) only"
        ),
    )
}

fn is_query(statement: &Statement) -> bool {
    matches!(statement, Statement::Query(_) | Statement::Explain { .. })
}

/// `SET` of something that is not a client setting: accepted and ignored,
/// because applying it would change the session's engine configuration.
fn is_ignored_set(statement: &Statement) -> bool {
    match statement {
        Statement::Set(Set::SingleAssignment { variable, .. }) => {
            let name = variable.to_string().to_lowercase();
            !CLIENT_SETTINGS.contains(&name.as_str())
        }
        Statement::Set(Set::SetTimeZone { local: false, .. }) => false,
        Statement::Set(_) => true,
        _ => false,
    }
}

/// `DEALLOCATE` and `DISCARD`, which clients send to tidy up their prepared
/// statements (psycopg on rollback, connection pools on return): the
/// command tag to answer with and the statement to forget, if one is named.
fn housekeeping(statement: &Statement) -> Option<(String, Option<String>)> {
    match statement {
        Statement::Deallocate { name, .. } if name.value.eq_ignore_ascii_case("all") => {
            Some(("DEALLOCATE ALL".into(), None))
        }
        Statement::Deallocate { name, .. } => Some(("DEALLOCATE".into(), Some(name.value.clone()))),
        Statement::Discard { .. } => Some(("DISCARD ALL".into(), None)),
        _ => None,
    }
}

fn tidy_up<C: ClientPortalStore>(client: &C, tag: String, name: Option<String>) -> Response
where
    C::PortalStore: PortalStore,
{
    if let Some(name) = name {
        client.portal_store().rm_statement(&name);
    }
    Response::Execution(Tag::new(&tag))
}

/// The hooks that answer session control statements: settings, `SHOW` and
/// transactions (which are accepted; every statement reads a snapshot).
fn control_hooks() -> [&'static dyn QueryHook; 2] {
    [&SetShowHook, &TransactionStatementHook]
}

fn statement_timeout<C: ClientInfo + ?Sized>(client: &C) -> Option<Duration> {
    client
        .metadata()
        .get("statement_timeout_ms")
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .map(Duration::from_millis)
}

async fn with_timeout<C: ClientInfo + ?Sized>(
    client: &C,
    run: impl std::future::Future<Output = Result<QueryResult, GovernError>>,
) -> PgWireResult<QueryResult> {
    match statement_timeout(client) {
        Some(limit) => match tokio::time::timeout(limit, run).await {
            Ok(r) => r.map_err(wire_error),
            Err(_) => Err(user_error(
                "ERROR",
                "57014",
                "canceling statement due to statement timeout".into(),
            )),
        },
        None => run.await.map_err(wire_error),
    }
}

fn encode(
    result: QueryResult,
    format: &Format,
    options: Arc<FormatOptions>,
) -> PgWireResult<Response> {
    let fields = Arc::new(arrow_schema_to_pg_fields(
        &result.schema,
        format,
        Some(options),
    )?);
    let rows_fields = fields.clone();
    let rows = stream::iter(result.batches)
        .map(move |b: RecordBatch| stream::iter(encode_recordbatch(rows_fields.clone(), b)))
        .flatten();
    Ok(Response::Query(QueryResponse::new(fields, rows)))
}

/// The statement and answer handlers for every governed connection. They
/// hold no state: each connection's session is found on the connection.
#[derive(Debug, Default)]
pub struct GovernedQueries {
    parser: Arc<GovernedParser>,
}

impl GovernedQueries {
    pub fn new() -> GovernedQueries {
        GovernedQueries::default()
    }
}

#[async_trait]
impl SimpleQueryHandler for GovernedQueries {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let wire = session_of(client)?;
        let statements = wire
            .parser
            .parse(query)
            .map_err(|e| user_error("ERROR", "42601", e.to_string()))?;
        if statements.is_empty() {
            return Ok(vec![Response::EmptyQuery]);
        }
        let mut responses = Vec::with_capacity(statements.len());
        'statements: for statement in statements {
            if is_ignored_set(&statement) {
                tracing::debug!(%statement, "SET ignored in a governed session");
                responses.push(Response::Execution(Tag::new("SET")));
                continue;
            }
            if let Some((tag, name)) = housekeeping(&statement) {
                responses.push(tidy_up(client, tag, name));
                continue;
            }
            for hook in control_hooks() {
                if let Some(r) = hook
                    .handle_simple_query(&statement, wire.session.context(), client)
                    .await
                {
                    responses.push(r?);
                    continue 'statements;
                }
            }
            if !is_query(&statement) {
                return Err(read_only_refusal(&statement));
            }
            let sql = statement.to_string();
            let result = with_timeout(client, wire.session.query(&sql)).await?;
            let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
            responses.push(encode(result, &Format::UnifiedText, options)?);
        }
        Ok(responses)
    }
}

/// A statement prepared on a connection: its text (for the audit), the
/// parsed statement and its plan with parameters unbound.
#[derive(Debug, Clone)]
pub struct Prepared {
    sql: String,
    statement: Statement,
    plan: LogicalPlan,
}

/// Parses and plans prepared statements in the connection's session.
#[derive(Debug, Default)]
pub struct GovernedParser;

#[async_trait]
impl QueryParser for GovernedParser {
    type Statement = Prepared;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let wire = session_of(client)?;
        let mut statements = wire
            .parser
            .parse(sql)
            .map_err(|e| user_error("ERROR", "42601", e.to_string()))?;
        if statements.is_empty() {
            return Ok(None);
        }
        if statements.len() > 1 {
            return Err(user_error(
                "ERROR",
                "42601",
                "cannot insert multiple commands into a prepared statement".into(),
            ));
        }
        let statement = statements.remove(0);
        let ctx = wire.session.context();
        let plan = if is_ignored_set(&statement) || housekeeping(&statement).is_some() {
            empty_plan()
        } else {
            match control_plan(&statement, ctx, client).await? {
                Some(plan) => plan,
                None if is_control(&statement) => empty_plan(),
                None if is_query(&statement) => ctx
                    .state()
                    .statement_to_plan(datafusion::sql::parser::Statement::Statement(Box::new(
                        statement.clone(),
                    )))
                    .await
                    .map_err(|e| wire_error(e.into()))?,
                None => return Err(read_only_refusal(&statement)),
            }
        };
        Ok(Some(Prepared {
            sql: statement.to_string(),
            statement,
            plan,
        }))
    }

    fn get_parameter_types(&self, stmt: &Prepared) -> PgWireResult<Vec<Type>> {
        parameter_types(&stmt.plan)?
            .into_iter()
            .map(|t| match t {
                Some(t) => into_pg_type(&t),
                None => Ok(Type::UNKNOWN),
            })
            .collect()
    }

    fn get_result_schema(
        &self,
        stmt: &Prepared,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        if !is_query(&stmt.statement) {
            return Ok(Vec::new());
        }
        let schema: &Schema = stmt.plan.schema().as_arrow();
        arrow_schema_to_pg_fields(schema, column_format.unwrap_or(&Format::UnifiedText), None)
    }
}

/// The plan the first control hook makes for a statement, if one does.
async fn control_plan<C>(
    statement: &Statement,
    ctx: &datafusion::prelude::SessionContext,
    client: &C,
) -> PgWireResult<Option<LogicalPlan>>
where
    C: ClientInfo + Send + Sync,
{
    for hook in control_hooks() {
        if let Some(plan) = hook
            .handle_extended_parse_query(statement, ctx, client)
            .await
        {
            return plan.map(Some);
        }
    }
    Ok(None)
}

/// The plan of a statement answered without running anything.
fn empty_plan() -> LogicalPlan {
    LogicalPlan::EmptyRelation(datafusion::logical_expr::EmptyRelation {
        produce_one_row: false,
        schema: Arc::new(datafusion::common::DFSchema::empty()),
    })
}

/// `SET`, `SHOW` and transaction statements.
fn is_control(statement: &Statement) -> bool {
    matches!(
        statement,
        Statement::Set(_)
            | Statement::ShowVariable { .. }
            | Statement::ShowVariables { .. }
            | Statement::StartTransaction { .. }
            | Statement::Commit { .. }
            | Statement::Rollback { .. }
    )
}

/// The types of a plan's parameters `$1…$n`, in order: as the engine
/// infers them, else from a cast the statement puts on the parameter, else
/// unknown (the client's own type then decides).
fn parameter_types(plan: &LogicalPlan) -> PgWireResult<Vec<Option<DataType>>> {
    let mut types: HashMap<String, Option<DataType>> = plan
        .get_parameter_types()
        .map_err(|e| wire_error(e.into()))?;
    if types.values().any(Option::is_none) {
        let _ = plan.apply(|node| {
            for e in node.expressions() {
                let _ = e.apply(|e| {
                    if let Expr::Cast(c) = e {
                        if let Expr::Placeholder(p) = c.expr.as_ref() {
                            if let Some(slot @ None) = types.get_mut(&p.id) {
                                *slot = Some(c.field.data_type().clone());
                            }
                        }
                    }
                    Ok(TreeNodeRecursion::Continue)
                });
            }
            Ok(TreeNodeRecursion::Continue)
        });
    }
    let mut ordered: Vec<(u32, Option<DataType>)> = types
        .into_iter()
        .map(|(id, t)| {
            (
                id.trim_start_matches('$')
                    .parse::<u32>()
                    .unwrap_or(u32::MAX),
                t,
            )
        })
        .collect();
    ordered.sort_by_key(|(n, _)| *n);
    Ok(ordered.into_iter().map(|(_, t)| t).collect())
}

#[async_trait]
impl ExtendedQueryHandler for GovernedQueries {
    type Statement = Prepared;
    type QueryParser = GovernedParser;

    fn query_parser(&self) -> Arc<GovernedParser> {
        self.parser.clone()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Prepared>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let wire = session_of(client)?;
        let prepared = &portal.statement.statement;
        if is_ignored_set(&prepared.statement) {
            return Ok(Response::Execution(Tag::new("SET")));
        }
        if let Some((tag, name)) = housekeeping(&prepared.statement) {
            return Ok(tidy_up(client, tag, name));
        }
        let types = parameter_types(&prepared.plan)?;
        let type_refs: Vec<Option<&DataType>> = types.iter().map(Option::as_ref).collect();
        let params: ParamValues =
            deserialize_parameters_with_server_types(portal, &type_refs, &[])?;
        if !is_query(&prepared.statement) {
            for hook in control_hooks() {
                if let Some(r) = hook
                    .handle_extended_query(
                        &prepared.statement,
                        &prepared.plan,
                        &params,
                        wire.session.context(),
                        client,
                    )
                    .await
                {
                    return r;
                }
            }
            return Err(read_only_refusal(&prepared.statement));
        }
        let plan = prepared
            .plan
            .clone()
            .replace_params_with_values(&params)
            .map_err(|e| wire_error(e.into()))?;
        let result = with_timeout(client, wire.session.execute(&prepared.sql, plan)).await?;
        let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
        encode(result, &portal.result_column_format, options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn parse(sql: &str) -> Statement {
        Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0)
    }

    #[test]
    fn only_queries_run() {
        assert!(is_query(&parse("SELECT 1")));
        assert!(is_query(&parse("WITH a AS (SELECT 1) SELECT * FROM a")));
        assert!(!is_query(&parse("CREATE TABLE t (a int)")));
        assert!(!is_query(&parse("INSERT INTO t VALUES (1)")));
        assert!(!is_query(&parse("COPY t TO '/tmp/x'")));
        let refused = read_only_refusal(&parse("DROP TABLE patient")).to_string();
        assert!(refused.contains("DROP is not allowed"), "{refused}");
    }

    #[test]
    fn engine_settings_are_ignored_and_client_settings_answered() {
        assert!(is_ignored_set(&parse(
            "SET datafusion.execution.batch_size = 1"
        )));
        assert!(is_ignored_set(&parse("SET work_mem = '64MB'")));
        assert!(!is_ignored_set(&parse("SET DateStyle = 'ISO, MDY'")));
        assert!(!is_ignored_set(&parse("SET statement_timeout = 1000")));
        assert!(!is_ignored_set(&parse("SET TIME ZONE 'Europe/London'")));
        assert!(!is_ignored_set(&parse("SELECT 1")));
    }

    #[test]
    fn clients_may_tidy_up_prepared_statements() {
        assert_eq!(
            housekeeping(&parse("DEALLOCATE ALL")),
            Some(("DEALLOCATE ALL".into(), None))
        );
        assert_eq!(
            housekeeping(&parse("DEALLOCATE _pg3_0")),
            Some(("DEALLOCATE".into(), Some("_pg3_0".into())))
        );
        assert_eq!(
            housekeeping(&parse("DISCARD ALL")),
            Some(("DISCARD ALL".into(), None))
        );
        assert_eq!(housekeeping(&parse("SELECT 1")), None);
    }

    #[tokio::test]
    async fn parameters_are_typed_in_order_from_casts_when_not_inferred() {
        let ctx = datafusion::prelude::SessionContext::new();
        let plan = ctx
            .state()
            .create_logical_plan("SELECT $2::int AS b, $1::text AS a")
            .await
            .unwrap();
        let types = parameter_types(&plan).unwrap();
        assert_eq!(types, vec![Some(DataType::Utf8View), Some(DataType::Int32)]);
    }
}
