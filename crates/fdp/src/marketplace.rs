//! `fdp product publish | list --offered | approve | decline | install
//! --offered`: the marketplace from the command line.
//!
//! Publishing signs a declared product's files with the instance's key and
//! offers the package to peers through the outbox. Listing asks each peer
//! that listens what it holds, keeps every package that checks against the
//! federation's authority, and shows what each reads and for which
//! purposes. Approving checks the package again (so a package altered
//! where it was kept is refused), checks it against this instance's model
//! and policy, installs it, records the decision and tells the peers it
//! came through. Every step is for the IG lead and is audited.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use chrono::Utc;
use fdp_federation::marketplace::{Decision, DecisionNotice, Marketplace, Offer, Package};
use fdp_federation::{Federation, InstanceIdentity};
use fdp_products::declared::DeclaredProduct;
use fdp_products::installed::{Installed, InstalledProduct};
use fdp_products::platform::{Product, Registry};
use serde_json::json;

use crate::instance::InstanceConfig;

/// `ID` or `ID@VERSION`.
fn named(product: &str) -> (&str, Option<&str>) {
    match product.split_once('@') {
        Some((id, v)) => (id, Some(v)),
        None => (product, None),
    }
}

pub async fn publish(
    data_dir: &Path,
    config: Option<&Path>,
    by: &str,
    to: &[String],
    dir: &Path,
) -> Result<()> {
    let config = InstanceConfig::for_data_dir(data_dir, config)?;
    let gov = config.governance(data_dir)?;
    let who = config.local_principal(by);
    let fed = config.federation(data_dir, &gov)?;
    let product = DeclaredProduct::load(dir, gov.policy())?;
    let peers: Vec<String> = if to.is_empty() {
        fed.peers().iter().map(|p| p.ods.clone()).collect()
    } else {
        to.to_vec()
    };
    let market = Marketplace::open(data_dir);
    for line in offer_to_peers(&gov, &who, &fed, &market, &product, &peers).await? {
        println!("{line}");
    }
    Ok(())
}

/// Sign `product` (checked already) as this instance's package, keep it,
/// and offer it to `peers`, as `who` (the IG lead; audited). What became
/// of each offer.
pub async fn offer_to_peers(
    gov: &fdp_govern::Governance,
    who: &fdp_govern::Principal,
    fed: &Federation,
    market: &Marketplace,
    product: &DeclaredProduct,
    peers: &[String],
) -> Result<Vec<String>> {
    let m = product.manifest();
    if let Some(unknown) = peers.iter().find(|p| fed.peer(p).is_none()) {
        bail!("{unknown} is not a configured peer");
    }
    let identity = &fed.identity;
    let what = format!(
        "publish product {} {} to {}",
        m.id,
        m.version,
        peers.join(", ")
    );
    let package = gov
        .reviewed_change(who, "marketplace", "cli", what.clone(), || {
            let package = Package::seal(identity, product.files.clone())?;
            market.offered(package.clone(), &identity.ods, &identity.ca)?;
            let (reads, purposes) = package.review();
            let decisions = vec![
                format!("files digest {}", package.digest),
                format!("reads {reads}"),
                format!("for {purposes}"),
            ];
            Ok::<_, fdp_federation::marketplace::PackageError>((package, decisions))
        })
        .with_context(|| what.clone())?;
    let body = serde_json::to_value(&package)?;
    let mut done = Vec::new();
    for peer in peers {
        // Sent now where the peer listens; the outbox retries otherwise.
        match fed
            .queue_and_send(peer, "product-offer", body.clone())
            .await
        {
            Ok(answer) => match answer.body["declined"].as_str() {
                Some(why) => bail!("{peer} refused {} {}: {why}", package.id, package.version),
                None => done.push(format!(
                    "{} {} offered to {peer}",
                    package.id, package.version
                )),
            },
            Err(e) if e.is_transient() => done.push(format!(
                "{} {} queued for {peer} ({e}); the instance's outbox will deliver it",
                package.id, package.version
            )),
            Err(e @ fdp_federation::SendError::UnknownPeer(_)) => bail!("{e}"),
            Err(e) => bail!("{peer} refused {} {}: {e}", package.id, package.version),
        }
    }
    Ok(done)
}

/// Ask every peer that listens what it holds, and keep each package that
/// checks against the federation's authority (audited as received, or as
/// refused with the reason).
pub async fn refresh(gov: &fdp_govern::Governance, fed: &Federation, market: &Marketplace) {
    let ca = fed.identity.ca.clone();
    let own = fed.identity.ods.clone();
    for peer in fed.peers().iter().filter(|p| p.address.is_some()) {
        let answer = match fed
            .request(
                &peer.ods,
                "marketplace-list",
                json!({}),
                Duration::from_secs(10),
            )
            .await
        {
            Ok(a) => a,
            Err(e) => {
                eprintln!("{}: not asked ({e})", peer.ods);
                continue;
            }
        };
        if let Some(why) = answer.body["declined"].as_str() {
            eprintln!("{}: did not list its marketplace ({why})", peer.ods);
            continue;
        }
        let offers = answer.body["answer"]["offers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for o in offers {
            let package: Package = match serde_json::from_value(o) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("{}: a package that does not read: {e}", peer.ods);
                    continue;
                }
            };
            if package.publisher == own {
                continue;
            }
            let what = format!(
                "offer of product {} {} from {} via {}",
                package.id, package.version, package.publisher, peer.ods
            );
            let principal = format!("peer:{}", peer.ods);
            match market.offered(package, &peer.ods, &ca) {
                Ok(true) => fdp_federation::marketplace::audit(
                    gov.audit(),
                    &principal,
                    Some(&peer.ods),
                    what,
                    "ok: kept, for the IG lead to decide".into(),
                ),
                Ok(false) => {}
                Err(e) => {
                    eprintln!("{}: refused: {e}", peer.ods);
                    fdp_federation::marketplace::audit(
                        gov.audit(),
                        &principal,
                        Some(&peer.ods),
                        what,
                        format!("refused: {e}"),
                    );
                }
            }
        }
    }
}

pub async fn list_offered(data_dir: &Path, config: Option<&Path>) -> Result<()> {
    let config = InstanceConfig::for_data_dir(data_dir, config)?;
    let gov = config.governance(data_dir)?;
    let fed = config.federation(data_dir, &gov)?;
    let market = Marketplace::open(data_dir);
    let own = fed.identity.ods.clone();
    refresh(&gov, &fed, &market).await;
    let installed = Installed::open(data_dir).all()?;
    let offers = market.offers()?;
    let mut shown = 0;
    for offer in offers.values().filter(|o| o.package.publisher != own) {
        let p = &offer.package;
        let (reads, purposes) = p.review();
        println!(
            "{:<28} {:<8} from {:<6} via {:<14} {}\n    {}\n    reads {reads}\n    for {purposes}",
            p.id,
            p.version,
            p.publisher,
            offer.via.join(","),
            offer.status(installed.get(&p.id)),
            p.title
        );
        shown += 1;
    }
    if shown == 0 {
        println!("nothing offered");
    }
    Ok(())
}

/// Install the checked package `offer`: its files loaded and checked
/// against this instance's model and policy, like a folder.
fn install(
    data_dir: &Path,
    gov: &fdp_govern::Governance,
    offer: &Offer,
) -> Result<(InstalledProduct, fdp_products::platform::Manifest)> {
    let p = &offer.package;
    let staging = data_dir.join("marketplace/staging").join(format!(
        "{}-{}-{}",
        p.id,
        p.version,
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&staging);
    p.write_to(&staging)
        .with_context(|| format!("writing {}", staging.display()))?;
    let loaded = DeclaredProduct::load(&staging, gov.policy());
    let _ = std::fs::remove_dir_all(&staging);
    let product = loaded?;
    let manifest = product.manifest();
    let installed = Installed::open(data_dir).install(&product, &Registry::builtin())?;
    Ok((installed, manifest))
}

pub async fn decide(
    data_dir: &Path,
    config: Option<&Path>,
    by: &str,
    product: &str,
    approve: bool,
    reason: &str,
) -> Result<()> {
    let config = InstanceConfig::for_data_dir(data_dir, config)?;
    let gov = config.governance(data_dir)?;
    let who = config.local_principal(by);
    let identity = InstanceIdentity::open(data_dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    let fed = config.federation(data_dir, &gov).ok();
    let (id, version) = named(product);
    let step = Decide {
        data_dir,
        gov: &gov,
        who: &who,
        identity: &identity,
        fed: fed.as_ref(),
    };
    let offer = step.decide(id, version, approve, reason).await?;
    let p = &offer.package;
    println!(
        "{} {} from {} {}",
        p.id,
        p.version,
        p.publisher,
        if approve {
            "approved, installed and in use"
        } else {
            "declined"
        }
    );
    Ok(())
}

/// An IG lead deciding on offers at one instance.
pub struct Decide<'a> {
    pub data_dir: &'a Path,
    pub gov: &'a fdp_govern::Governance,
    pub who: &'a fdp_govern::Principal,
    /// The instance's identity: packages are checked against its
    /// federation authority.
    pub identity: &'a InstanceIdentity,
    /// Where the peers that offered it are told, when there is one.
    pub fed: Option<&'a Federation>,
}

impl Decide<'_> {
    /// Approve (and install) or decline the offer `id` (its latest
    /// version, or `version`), checked again first; audited, and the peers
    /// it came through, and its publisher where that is a peer, told.
    pub async fn decide(
        &self,
        id: &str,
        version: Option<&str>,
        approve: bool,
        reason: &str,
    ) -> Result<Offer> {
        let market = Marketplace::open(self.data_dir);
        let verb = if approve { "approve" } else { "decline" };
        let what = match version {
            Some(v) => format!("{verb} product {id}@{v}"),
            None => format!("{verb} product {id}"),
        };
        let offer = self
            .gov
            .reviewed_change(self.who, "marketplace", "cli", what.clone(), || {
                let offer = market.checked(id, version, &self.identity.ca)?;
                let (reads, purposes) = offer.package.review();
                let mut decisions = vec![
                    format!(
                        "{} {} from {} via {}; files digest {}",
                        offer.package.id,
                        offer.package.version,
                        offer.package.publisher,
                        offer.via.join(", "),
                        offer.package.digest
                    ),
                    format!("reads {reads}"),
                    format!("for {purposes}"),
                    format!("why: {reason}"),
                ];
                if approve {
                    let (installed, _) = install(self.data_dir, self.gov, &offer)?;
                    decisions.push(format!("installed; {} in use", installed.active));
                }
                market.decide(
                    &offer.package.key(),
                    Decision {
                        approved: approve,
                        by: self.who.name.clone(),
                        at: Utc::now(),
                        reason: reason.to_string(),
                        digest: offer.package.digest.clone(),
                    },
                )?;
                Ok::<_, anyhow::Error>((offer, decisions))
            })
            .with_context(|| what.clone())?;
        if let Some(fed) = self.fed {
            let p = &offer.package;
            let notice = DecisionNotice {
                id: p.id.clone(),
                version: p.version.clone(),
                publisher: p.publisher.clone(),
                digest: p.digest.clone(),
                approved: approve,
                reason: reason.to_string(),
            };
            let mut told: Vec<&str> = offer.via.iter().map(String::as_str).collect();
            told.push(&p.publisher);
            told.sort();
            told.dedup();
            for peer in told.into_iter().filter(|t| fed.peer(t).is_some()) {
                // Sent now where the peer listens; the outbox retries otherwise.
                match fed
                    .queue_and_send(peer, "product-decision", serde_json::to_value(&notice)?)
                    .await
                {
                    Ok(_) => {}
                    Err(e) if e.is_transient() => {}
                    Err(e) => {
                        tracing::warn!(peer, error = %e, "a peer was not told of a product decision")
                    }
                }
            }
        }
        Ok(offer)
    }
}

pub fn install_offered(
    data_dir: &Path,
    config: Option<&Path>,
    by: &str,
    product: &str,
) -> Result<()> {
    let config = InstanceConfig::for_data_dir(data_dir, config)?;
    let gov = config.governance(data_dir)?;
    let who = config.local_principal(by);
    let identity = InstanceIdentity::open(data_dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    let market = Marketplace::open(data_dir);
    let (id, version) = named(product);
    let what = format!("install offered product {product}");
    let installed = gov
        .reviewed_change(&who, "marketplace", "cli", what.clone(), || {
            let offer = market.checked(id, version, &identity.ca)?;
            let p = &offer.package;
            match &offer.decision {
                Some(d) if d.approved && d.digest == p.digest => {}
                Some(d) if d.digest == p.digest => bail!(
                    "{} {} was declined by {} ({}): it is not installed",
                    p.id,
                    p.version,
                    d.by,
                    d.reason
                ),
                _ => bail!(
                    "{} {} from {} has not been approved: the IG lead reviews it with `fdp product approve` first",
                    p.id,
                    p.version,
                    p.publisher
                ),
            }
            let (installed, _) = install(data_dir, &gov, &offer)?;
            let note = format!("{} {} in use", installed.id, installed.active);
            Ok::<_, anyhow::Error>((installed, vec![note]))
        })
        .with_context(|| what.clone())?;
    println!("{} {} installed and in use", installed.id, installed.active);
    Ok(())
}
