//! `fdp sql`: query the tables of a data directory, through a governed
//! session like every other way in.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use datafusion::arrow::array::RecordBatch;
use fdp_govern::{Purpose, SessionRequest};
use fdp_store::AsOf;

use crate::instance::InstanceConfig;

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
}

#[derive(Args)]
pub struct SqlArgs {
    /// Data directory of the instance
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Output format
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Read every table as it was at a Delta version (a number) or at an
    /// instant (RFC 3339, e.g. 2026-11-21T09:00:00Z, or a date, 2026-11-21,
    /// meaning its midnight UTC)
    #[arg(long, value_parser = parse_as_of)]
    pub as_of: Option<AsOf>,
    /// The instance's configuration, for its policy and the roles of `--as`
    /// (default: instance.toml in the data directory, if there is one)
    #[arg(long, env = "FDP_CONFIG")]
    pub config: Option<PathBuf>,
    /// Who is asking: a principal of the instance (`[principal.NAME]`)
    #[arg(long = "as", env = "FDP_PRINCIPAL")]
    pub principal: String,
    /// Why: direct-care, operations, planning or research
    #[arg(long, env = "FDP_PURPOSE")]
    pub purpose: Purpose,
    /// The role to act in, when the principal holds several granted the purpose
    #[arg(long)]
    pub role: Option<String>,
    /// The approved project (research; picks the pseudonymisation key)
    #[arg(long)]
    pub project: Option<String>,
    /// Why you need this, for purposes the policy marks sensitive (audited)
    #[arg(long)]
    pub justification: Option<String>,
    /// The query. Canonical tables use the model's snake_case names
    /// (ward_stay, admission, patient); raw tables are in the `raw` schema
    /// (raw.hl7v2_message).
    pub query: String,
}

fn parse_as_of(s: &str) -> Result<AsOf, String> {
    if let Ok(v) = s.parse::<u64>() {
        return Ok(AsOf::Version(v));
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(AsOf::Timestamp(t.with_timezone(&chrono::Utc)));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let midnight = d.and_hms_opt(0, 0, 0).expect("midnight exists");
        return Ok(AsOf::Timestamp(midnight.and_utc()));
    }
    Err(format!(
        "{s:?} is neither a version number nor an instant (2026-11-21T09:00:00Z or 2026-11-21)"
    ))
}

pub async fn run(args: SqlArgs) -> Result<()> {
    if !args.data_dir.join("tables").is_dir()
        && !args
            .data_dir
            .join(fdp_store::location::TABLES_URL_FILE)
            .is_file()
    {
        anyhow::bail!(
            "{} has no tables: is it an instance's data directory?",
            args.data_dir.display()
        );
    }
    let config = InstanceConfig::for_data_dir(&args.data_dir, args.config.as_deref())?;
    let governance = config.governance(&args.data_dir)?;
    let mut req = SessionRequest::new(config.local_principal(&args.principal), args.purpose, "sql");
    req.as_of = args.as_of.unwrap_or_default();
    req.role = args.role.clone();
    req.project = args.project.clone();
    req.justification = args.justification.clone();
    let tables = fdp_store::StoredTables::new(&args.data_dir);
    let session = governance
        .session(&tables, req)
        .await
        .context("opening a governed session")?;
    let result = session.query(&args.query).await.map_err(|e| {
        anyhow::anyhow!("{e}\n(list the tables you may read with: SELECT table_schema, table_name FROM information_schema.tables)")
    });
    governance.audit().checkpoint()?;
    let result = result?;
    let out = render(&result.batches, args.format)?;
    print!("{out}");
    Ok(())
}

pub fn render(batches: &[RecordBatch], format: Format) -> Result<String> {
    use datafusion::arrow::csv::WriterBuilder;
    use datafusion::arrow::json::ArrayWriter;
    Ok(match format {
        Format::Table => {
            let mut s =
                datafusion::arrow::util::pretty::pretty_format_batches(batches)?.to_string();
            s.push('\n');
            s
        }
        Format::Csv => {
            let mut buf = Vec::new();
            {
                let mut w = WriterBuilder::new().with_header(true).build(&mut buf);
                for b in batches {
                    w.write(b)?;
                }
            }
            String::from_utf8(buf)?
        }
        Format::Json => {
            let mut buf = Vec::new();
            {
                let mut w = ArrayWriter::new(&mut buf);
                for b in batches {
                    w.write(b)?;
                }
                w.finish()?;
            }
            let mut s = String::from_utf8(buf)?;
            if s.is_empty() {
                s.push_str("[]");
            }
            s.push('\n');
            s
        }
    })
}
