//! `cdm-gen` regenerates `crates/fdp-model/model/cdm.json` from the FDP Canonical Data
//! Model OpenAPI spec, or with `--check` verifies that the committed file is current.
//! It writes only that one file and never touches the spec.

use std::path::PathBuf;
use std::process::ExitCode;

use cdm_gen::{check, generate_from_files, write, CheckOutcome, Paths};

const USAGE: &str = "usage: cdm-gen [--spec PATH] [--out PATH] [--sensitivity PATH] \
[--primary-keys PATH] [--extensions PATH] [--check]

Defaults are relative to the workspace root:
  --spec          ../shared/data/fdp_cdm/canonical-data-model-openapi.yaml
  --out           crates/fdp-model/model/cdm.json
  --sensitivity   crates/fdp-model/model/sensitivity.toml
  --primary-keys  crates/fdp-model/model/primary_keys.toml
  --extensions    crates/fdp-model/model/extensions.json
  --check         exit 1 if --out differs from what would be generated";

fn parse_args() -> Result<(Paths, bool), String> {
    let mut paths = Paths::defaults();
    let mut check_only = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<PathBuf, String> {
            inline
                .clone()
                .or_else(|| args.next())
                .map(PathBuf::from)
                .ok_or_else(|| format!("{name} needs a path"))
        };
        match flag.as_str() {
            "--spec" => paths.spec = value("--spec")?,
            "--out" => paths.out = value("--out")?,
            "--sensitivity" => paths.sensitivity = value("--sensitivity")?,
            "--primary-keys" => paths.primary_keys = value("--primary-keys")?,
            "--extensions" => paths.extensions = value("--extensions")?,
            "--check" => check_only = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok((paths, check_only))
}

fn main() -> ExitCode {
    let (paths, check_only) = match parse_args() {
        Ok(parsed) => parsed,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("cdm-gen: {message}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let generated = match generate_from_files(&paths) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("cdm-gen: {e}");
            return ExitCode::from(2);
        }
    };
    print!("{}", generated.summary);
    if check_only {
        match check(&paths, &generated) {
            Ok(CheckOutcome::UpToDate) => {
                println!("{} is up to date", paths.out.display());
                ExitCode::SUCCESS
            }
            Ok(CheckOutcome::Differs { line }) => {
                eprintln!(
                    "cdm-gen: {} is out of date (first difference at line {line}); run `cargo run -p cdm-gen`",
                    paths.out.display()
                );
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("cdm-gen: {e}");
                ExitCode::from(2)
            }
        }
    } else {
        match write(&paths, &generated) {
            Ok(changed) => {
                let verb = if changed { "wrote" } else { "unchanged:" };
                println!("{verb} {}", paths.out.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("cdm-gen: {e}");
                ExitCode::from(2)
            }
        }
    }
}
