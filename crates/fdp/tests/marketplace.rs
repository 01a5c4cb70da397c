//! The marketplace between three running instances: a trust (RAA)
//! publishes a declared product to its ICB (QWO); another trust (RBB) lists
//! what the ICB holds, sees what the product reads and for which purposes,
//! and its IG lead approves it, which installs it; a later version is
//! offered as an update and approved in turn. A package altered where it
//! is kept is refused, an install before approval is refused, a declined
//! product stays uninstalled, and each side audits each step.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

const PRINCIPALS: &str = "[principal.ig]\nroles = [\"information-governance-lead\"]\n\
                          [principal.ana]\nroles = [\"analyst\"]\n\
                          [principal.bed]\nroles = [\"bed-manager\"]\n";

fn cert(data: &Path) -> PathBuf {
    data.join("federation/instance.pem")
}

fn peer(ods: &str, role: &str, data: &Path, port: u16) -> String {
    format!(
        "[[federation.peer]]\nods = \"{ods}\"\nrole = \"{role}\"\naddress = \"127.0.0.1:{port}\"\ncertificate = \"{}\"\n",
        cert(data).display()
    )
}

/// `fdp product ARGS` against the instance in `data`: what it printed, or
/// why it refused.
fn product(data: &Path, args: &[&str]) -> Result<String, String> {
    let out = fdp()
        .arg("product")
        .args(&args[..1])
        .arg("--data-dir")
        .arg(data)
        .arg("--config")
        .arg(data.with_extension("toml"))
        .args(&args[1..])
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The example product in `examples/products/NAME`, as RAA's, at `version`.
fn example_as(dir: &Path, name: &str, version: &str) -> PathBuf {
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/products")
        .join(name);
    let to = dir.join(format!("{name}-{version}"));
    std::fs::create_dir_all(&to).unwrap();
    for f in std::fs::read_dir(&from).unwrap() {
        let f = f.unwrap();
        let mut text = std::fs::read_to_string(f.path()).unwrap();
        if f.file_name() == "product.toml" {
            text = text
                .replace("publisher = \"RXX\"", "publisher = \"RAA\"")
                .replace("version = \"1.0.0\"", &format!("version = \"{version}\""));
        }
        std::fs::write(to.join(f.file_name()), text).unwrap();
    }
    to
}

fn audited(data: &Path, kind: &str, what: &str) -> Vec<Value> {
    audit_entries(data)
        .into_iter()
        .filter(|e| e["kind"] == kind && e["what"].as_str().unwrap_or("").contains(what))
        .collect()
}

#[test]
fn a_product_travels_from_one_trust_through_the_icb_to_another() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    fdp_ok!("peer", "ca", "--out", ca, "--name", "Test ICS");
    let (raa, qwo, rbb) = (
        dir.path().join("RAA"),
        dir.path().join("QWO"),
        dir.path().join("RBB"),
    );
    peer_init(&raa, "RAA", "trust", &ca);
    peer_init(&qwo, "QWO", "icb", &ca);
    peer_init(&rbb, "RBB", "trust", &ca);
    let (p_raa, p_qwo, p_rbb) = (free_port(), free_port(), free_port());
    let listen = |port: u16| format!("[federation]\nlisten = \"127.0.0.1:{port}\"\n");
    let start = |data: &Path, config: String| {
        Server::start_configured(data, 1.0, "127.0.0.1:0", "127.0.0.1:0", &config)
    };
    let s_raa = start(
        &raa,
        format!(
            "{PRINCIPALS}{}{}",
            listen(p_raa),
            peer("QWO", "icb", &qwo, p_qwo)
        ),
    );
    let s_qwo = start(
        &qwo,
        format!(
            "{PRINCIPALS}{}{}{}",
            listen(p_qwo),
            peer("RAA", "trust", &raa, p_raa),
            peer("RBB", "trust", &rbb, p_rbb)
        ),
    );
    let s_rbb = start(
        &rbb,
        format!(
            "{PRINCIPALS}{}{}",
            listen(p_rbb),
            peer("QWO", "icb", &qwo, p_qwo)
        ),
    );

    // Publishing is for the IG lead, and only the organisation's own product.
    let v1 = example_as(dir.path(), "discharge-delays-summary", "1.0.0");
    let e = product(&raa, &["publish", "--by", "ana", v1.to_str().unwrap()]).unwrap_err();
    assert!(e.contains("reviews the audit"), "{e}");
    let theirs =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/products/theatre-utilisation");
    let e = product(&raa, &["publish", "--by", "ig", theirs.to_str().unwrap()]).unwrap_err();
    assert!(
        e.contains("publishes only its own organisation's products"),
        "{e}"
    );
    let out = product(&raa, &["publish", "--by", "ig", v1.to_str().unwrap()]).unwrap();
    assert!(
        out.contains("discharge-delays-summary 1.0.0 offered to QWO"),
        "{out}"
    );
    let theatres = example_as(dir.path(), "theatre-utilisation", "1.0.0");
    product(&raa, &["publish", "--by", "ig", theatres.to_str().unwrap()]).unwrap();

    // The ICB holds both; the other trust lists them from the ICB, with
    // what each reads and for which purposes.
    let listed = product(&qwo, &["list", "--offered"]).unwrap();
    assert!(listed.contains("discharge-delays-summary"), "{listed}");
    let listed = product(&rbb, &["list", "--offered"]).unwrap();
    assert!(
        listed.contains("discharge-delays-summary     1.0.0    from RAA    via QWO"),
        "{listed}"
    );
    assert!(
        listed.contains("reads discharge_readiness(admission_id, medically_optimised, medically_optimised_date, updated_timestamp)"),
        "{listed}"
    );
    assert!(listed.contains("for operations, planning"), "{listed}");
    assert!(listed.contains(" new\n"), "{listed}");

    // No install before the IG lead approves; a non-IG approval is refused.
    let e = product(
        &rbb,
        &[
            "install",
            "--by",
            "ig",
            "--offered",
            "discharge-delays-summary",
        ],
    )
    .unwrap_err();
    assert!(e.contains("has not been approved"), "{e}");
    let e = product(
        &rbb,
        &[
            "approve",
            "--by",
            "ana",
            "--reason",
            "looks useful",
            "discharge-delays-summary",
        ],
    )
    .unwrap_err();
    assert!(e.contains("reviews the audit"), "{e}");

    // A package altered where it is kept is refused when acted on.
    let offers = rbb.join("marketplace/offers.json");
    let genuine = std::fs::read_to_string(&offers).unwrap();
    let tampered = genuine.replacen("WHERE r.medically_optimised", "WHERE TRUE", 1);
    assert_ne!(genuine, tampered, "the planted change did not land");
    std::fs::write(&offers, &tampered).unwrap();
    let e = product(
        &rbb,
        &[
            "approve",
            "--by",
            "ig",
            "--reason",
            "IG board 3 Dec",
            "discharge-delays-summary",
        ],
    )
    .unwrap_err();
    assert!(e.contains("changed after it was published"), "{e}");
    assert!(!product(&rbb, &["list"])
        .unwrap()
        .contains("discharge-delays-summary"));
    // Listing again takes the genuine package back from the ICB.
    product(&rbb, &["list", "--offered"]).unwrap();

    // Approved: installed, served, and both sides audit it.
    let out = product(
        &rbb,
        &[
            "approve",
            "--by",
            "ig",
            "--reason",
            "IG board 3 Dec",
            "discharge-delays-summary",
        ],
    )
    .unwrap();
    assert!(out.contains("approved, installed and in use"), "{out}");
    assert!(product(&rbb, &["list"])
        .unwrap()
        .contains("discharge-delays-summary"));
    let token = fdp_ok!("token", "create", "bed", "--data-dir", rbb)
        .trim()
        .to_string();
    let (status, served) = http_get(s_rbb.http, "/api/products", Some(&token));
    assert_eq!(status, 200);
    assert!(served.contains("\"discharge-delays-summary\""), "{served}");
    let e = product(
        &rbb,
        &[
            "decline",
            "--by",
            "ig",
            "--reason",
            "not for us",
            "theatre-utilisation",
        ],
    );
    assert!(e.unwrap().contains("declined"));
    let e = product(
        &rbb,
        &["install", "--by", "ig", "--offered", "theatre-utilisation"],
    )
    .unwrap_err();
    assert!(e.contains("was declined"), "{e}");

    // The page lists them.
    let (status, page) = http_get(s_rbb.http, "/marketplace", Some(&token));
    assert_eq!(status, 200);
    assert!(
        page.contains("Discharge delays summary") && page.contains("installed, in use"),
        "{page}"
    );

    // A later version is offered as an update, and approved in turn.
    let v2 = example_as(dir.path(), "discharge-delays-summary", "1.1.0");
    product(&raa, &["publish", "--by", "ig", v2.to_str().unwrap()]).unwrap();
    let listed = product(&rbb, &["list", "--offered"]).unwrap();
    assert!(listed.contains("update (1.0.0 in use)"), "{listed}");
    product(
        &rbb,
        &[
            "approve",
            "--by",
            "ig",
            "--reason",
            "update reviewed",
            "discharge-delays-summary@1.1.0",
        ],
    )
    .unwrap();
    let installed = product(&rbb, &["list"]).unwrap();
    assert!(
        installed.contains("1.1.0") && installed.contains("versions 1.0.0, 1.1.0"),
        "{installed}"
    );

    // Each side's audit: publisher, ICB and the installing trust.
    assert_eq!(
        audited(
            &raa,
            "marketplace",
            "publish product discharge-delays-summary 1.0.0"
        )
        .iter()
        .filter(|e| e["outcome"] == "ok")
        .count(),
        1
    );
    assert!(audited(&raa, "federation-send", "product-offer")
        .iter()
        .any(|e| e["outcome"] == "delivered"));
    assert!(audited(
        &qwo,
        "marketplace",
        "offer of product discharge-delays-summary 1.0.0 from RAA via RAA"
    )
    .iter()
    .any(|e| e["outcome"].as_str().unwrap().starts_with("ok")));
    assert!(!audited(&qwo, "marketplace", "list the marketplace").is_empty());
    let told = |what: &str| wait_until(10, what, || !audited(&qwo, "marketplace", what).is_empty());
    told("product discharge-delays-summary 1.0.0 from RAA approved at RBB");
    told("product theatre-utilisation 1.0.0 from RAA declined at RBB");
    let rbb_steps: Vec<(String, String)> = audit_entries(&rbb)
        .into_iter()
        .filter(|e| e["kind"] == "marketplace")
        .map(|e| {
            (
                e["what"].as_str().unwrap().to_string(),
                e["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for (what, outcome) in [
        (
            "offer of product discharge-delays-summary 1.0.0 from RAA via QWO",
            "ok",
        ),
        ("install offered product discharge-delays-summary", "failed"),
        ("approve product discharge-delays-summary", "refused"),
        ("approve product discharge-delays-summary", "failed"),
        ("approve product discharge-delays-summary", "ok"),
        ("decline product theatre-utilisation", "ok"),
        ("install offered product theatre-utilisation", "failed"),
        ("approve product discharge-delays-summary@1.1.0", "ok"),
    ] {
        assert!(
            rbb_steps
                .iter()
                .any(|(w, o)| w == what && o.starts_with(outcome)),
            "{what}: {outcome} not in {rbb_steps:#?}"
        );
    }

    s_raa.stop();
    s_qwo.stop();
    s_rbb.stop();
}
