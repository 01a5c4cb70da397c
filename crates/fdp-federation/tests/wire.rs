//! Two instances over mutual TLS on loopback: a message waits in the
//! outbox while its peer is down and arrives once it is up; a replayed,
//! tampered, stale or stranger's message is refused and audited; a
//! certificate from another authority cannot connect.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use fdp_federation::envelope::{Envelope, Signed};
use fdp_federation::identity::{FederationCa, InstanceIdentity, OrgRole};
use fdp_federation::node::MESSAGES;
use fdp_federation::transport::{self, PeerClient};
use fdp_federation::{Delivery, Federation, Handler, Peer};
use fdp_govern::keystore::Keystore;
use fdp_govern::AuditLog;
use serde_json::{json, Value};
use tokio::net::TcpListener;

fn audit_of(data: &Path) -> Arc<AuditLog> {
    Arc::new(AuditLog::open(data, &Keystore::open(data)).unwrap())
}

fn peer(id: &InstanceIdentity, address: Option<String>) -> Peer {
    Peer {
        ods: id.ods.clone(),
        role: id.role,
        address,
        cert: id.cert.clone(),
    }
}

struct Echo;

#[async_trait::async_trait]
impl Handler for Echo {
    async fn handle(&self, from: &Peer, m: &Envelope) -> Result<Value, String> {
        if m.kind == "question" && m.body["decline"] == true {
            return Err("not approved here".into());
        }
        Ok(json!({"heard": m.body, "from": from.ods}))
    }
}

/// Serve `fed` on `listener`; the task stops when the handle is aborted.
fn start(fed: &Arc<Federation>, listener: TcpListener) -> tokio::task::JoinHandle<()> {
    let config = transport::server_config(&fed.identity).unwrap();
    tokio::spawn(transport::serve(listener, config, fed.router()))
}

/// `e` sealed by `from` and posted over `from`'s own TLS identity to `to`,
/// listening at `addr`.
async fn send_as(
    from: &InstanceIdentity,
    to: &InstanceIdentity,
    addr: &str,
    e: &Envelope,
) -> Result<transport::Reply, transport::TransportError> {
    let client = PeerClient::new(from, Duration::from_secs(5)).unwrap();
    let s = Signed::seal(from, e);
    client
        .post(
            addr,
            (&to.ods, &to.cert),
            MESSAGES,
            s.bytes.clone(),
            &s.signature_hex(),
        )
        .await
}

fn entries(data: &Path) -> Vec<Value> {
    std::fs::read_to_string(data.join("audit/audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_are_delivered_once_and_bad_ones_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = FederationCa::create(&dir.path().join("ca"), "Test ICS").unwrap();
    let (trust_dir, icb_dir) = (dir.path().join("rxx"), dir.path().join("qwo"));
    let trust = InstanceIdentity::init(&trust_dir, "RXX", OrgRole::Trust, &ca).unwrap();
    let icb = InstanceIdentity::init(&icb_dir, "QWO", OrgRole::Icb, &ca).unwrap();
    // A member of the federation the ICB has not configured, and an
    // instance certified by some other authority.
    let loner_dir = dir.path().join("loner");
    let loner = InstanceIdentity::init(&loner_dir, "RYY", OrgRole::Trust, &ca).unwrap();
    let other_ca = FederationCa::create(&dir.path().join("other"), "Elsewhere").unwrap();
    let stranger =
        InstanceIdentity::init(&dir.path().join("x"), "QWO", OrgRole::Icb, &other_ca).unwrap();

    // The ICB's port is known before it listens: the trust's message waits.
    let icb_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let icb_addr = icb_listener.local_addr().unwrap().to_string();
    drop(icb_listener);
    let trust_fed = Arc::new(
        Federation::open(
            &trust_dir,
            vec![peer(&icb, Some(icb_addr.clone()))],
            audit_of(&trust_dir),
        )
        .unwrap(),
    );
    let queued = trust_fed
        .queue("QWO", "question", json!({"q": "beds"}))
        .unwrap();
    let e = trust_fed.send(&queued.envelope.id).await.unwrap_err();
    assert!(e.is_transient(), "{e}");
    let m = trust_fed.outbox.get(&queued.envelope.id).unwrap();
    assert_eq!((m.state, m.attempts), (Delivery::Queued, 1));
    assert!(m.last_error.unwrap().contains("unreachable"));

    // The ICB comes up; the outbox worker delivers, exactly once.
    let icb_fed =
        Arc::new(Federation::open(&icb_dir, vec![peer(&trust, None)], audit_of(&icb_dir)).unwrap());
    icb_fed.set_handler(Arc::new(Echo));
    let server = start(&icb_fed, TcpListener::bind(&icb_addr).await.unwrap());
    let worker = tokio::spawn(trust_fed.clone().run_outbox());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while trust_fed.outbox.get(&queued.envelope.id).unwrap().state != Delivery::Delivered {
        assert!(std::time::Instant::now() < deadline, "never delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(icb_fed.inbox.of_kind("question").unwrap().len(), 1);
    worker.abort();

    // An answer comes back signed by the peer.
    let asked = trust_fed
        .queue_for_caller("QWO", "question", json!({"q": "theatres"}))
        .unwrap();
    let answer = trust_fed.send(&asked.envelope.id).await.unwrap();
    assert_eq!(answer.from, "QWO");
    assert_eq!(answer.body["answer"]["heard"], json!({"q": "theatres"}));
    let declined = trust_fed
        .queue_for_caller("QWO", "question", json!({"decline": true}))
        .unwrap();
    let answer = trust_fed.send(&declined.envelope.id).await.unwrap();
    assert_eq!(answer.body["declined"], "not approved here");

    // The same message again is a replay: refused, and the inbox unchanged.
    let client = PeerClient::new(&trust, Duration::from_secs(5)).unwrap();
    let sealed = Signed::seal(&trust, &asked.envelope);
    let post = |bytes: Vec<u8>, sig: String| {
        let client = client.clone();
        let (addr, cert) = (icb_addr.clone(), icb.cert.clone());
        async move {
            client
                .post(&addr, ("QWO", &cert), MESSAGES, bytes, &sig)
                .await
                .unwrap()
        }
    };
    let r = post(sealed.bytes.clone(), sealed.signature_hex()).await;
    assert_eq!(r.status, 409, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(icb_fed.inbox.of_kind("question").unwrap().len(), 3);
    // Tampered: the signature no longer matches.
    let fresh = Envelope::new("RXX", "QWO", "question", json!({"n": 1}));
    let sealed = Signed::seal(&trust, &fresh);
    let mut tampered = sealed.bytes.clone();
    let at = tampered.windows(5).position(|w| w == b"\"n\":1").unwrap() + 4;
    tampered[at] = b'2';
    let r = post(tampered, sealed.signature_hex()).await;
    assert_eq!(r.status, 401, "{}", String::from_utf8_lossy(&r.body));
    // Stale: sent ten minutes ago, signed properly.
    let mut old = Envelope::new("RXX", "QWO", "question", json!({}));
    old.sent_at = chrono::Utc::now() - chrono::Duration::minutes(10);
    let bytes = serde_json::to_vec(&old).unwrap();
    let sig: String = trust
        .sign(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let r = post(bytes, sig).await;
    assert_eq!(r.status, 403);
    assert!(String::from_utf8_lossy(&r.body).contains("older than"));
    // Signed by the trust but claiming to be from someone else.
    let mut lie = Envelope::new("RYY", "QWO", "question", json!({}));
    lie.from = "RYY".into();
    let s = Signed::seal(&trust, &lie);
    let r = post(s.bytes.clone(), s.signature_hex()).await;
    assert_ne!(r.status, 200);

    // A configured peer, signing properly, whose message id would name a
    // file outside the inbox (or any other file): refused before it
    // touches the file system. (Class 6 of the adversarial suite.)
    for id in [
        "../../escaped",
        "..%2f..%2fescaped",
        "/tmp/escaped",
        "0123456789abcdef0123456789abcdeF",
        "seen.log",
        "",
    ] {
        let mut e = Envelope::new("RXX", "QWO", "question", json!({}));
        e.id = id.into();
        let s = Signed::seal(&trust, &e);
        let r = post(s.bytes.clone(), s.signature_hex()).await;
        assert_eq!(r.status, 400, "{id}: {}", String::from_utf8_lossy(&r.body));
        assert!(String::from_utf8_lossy(&r.body).contains("message id"));
    }
    assert!(!icb_dir.join("federation").join("escaped.json").exists());
    assert!(!icb_dir.join("escaped.json").exists());
    assert_eq!(icb_fed.inbox.of_kind("question").unwrap().len(), 3);
    // Nor does an acknowledgement naming a file collect anything.
    assert!(icb_fed.inbox.get("../seen").unwrap().is_none());

    // A member of the federation that is not configured here.
    let question = |from: &str| Envelope::new(from, "QWO", "question", json!({}));
    let r = send_as(&loner, &icb, &icb_addr, &question("RYY"))
        .await
        .unwrap();
    assert_eq!(r.status, 403);
    assert!(String::from_utf8_lossy(&r.body).contains("not a configured peer"));
    // A certificate from another authority cannot even connect.
    let e = send_as(&stranger, &icb, &icb_addr, &question("QWO"))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("TLS"), "{e}");

    server.abort();
    // Both sides audited: the ICB every refusal with its reason.
    let icb_audit = entries(&icb_dir);
    let refused: Vec<&str> = icb_audit
        .iter()
        .filter(|e| e["kind"] == "federation-refused")
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    for why in [
        "replayed",
        "message id",
        "signature",
        "older than",
        "not a configured peer",
    ] {
        assert!(
            refused.iter().any(|r| r.contains(why)),
            "{why}: {refused:?}"
        );
    }
    assert_eq!(
        icb_audit
            .iter()
            .filter(|e| e["kind"] == "federation-receive")
            .count(),
        3
    );
    let trust_audit = entries(&trust_dir);
    assert!(trust_audit
        .iter()
        .any(|e| e["kind"] == "federation-send" && e["outcome"] == "delivered"));
    assert!(trust_audit.iter().any(|e| e["kind"] == "federation-send"
        && e["outcome"].as_str().unwrap().starts_with("not delivered")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_that_only_connects_out_collects_its_questions_and_answers() {
    let dir = tempfile::tempdir().unwrap();
    let ca = FederationCa::create(&dir.path().join("ca"), "Test ICS").unwrap();
    let (site_dir, icb_dir) = (dir.path().join("site"), dir.path().join("qwo"));
    let site = InstanceIdentity::init(&site_dir, "RZZ", OrgRole::Trust, &ca).unwrap();
    let icb = InstanceIdentity::init(&icb_dir, "QWO", OrgRole::Icb, &ca).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let icb_addr = listener.local_addr().unwrap().to_string();
    // The ICB knows the site but cannot reach it.
    let icb_fed =
        Arc::new(Federation::open(&icb_dir, vec![peer(&site, None)], audit_of(&icb_dir)).unwrap());
    let server = start(&icb_fed, listener);
    let site_fed = Arc::new(
        Federation::open(
            &site_dir,
            vec![peer(&icb, Some(icb_addr.clone()))],
            audit_of(&site_dir),
        )
        .unwrap(),
    );
    site_fed.set_handler(Arc::new(Echo));
    let poller = tokio::spawn(
        site_fed
            .clone()
            .run_poller("QWO".into(), Duration::from_millis(100)),
    );
    let sender = tokio::spawn(site_fed.clone().run_outbox());

    // Asked, collected by the site, answered back over its own connection.
    let answer = icb_fed
        .request("RZZ", "question", json!({"q": 1}), Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(answer.from, "RZZ");
    assert_eq!(answer.body["answer"]["heard"], json!({"q": 1}));
    // The site acknowledges what it collected: delivered at the ICB.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let all = icb_fed.outbox.list().unwrap();
        if all.iter().all(|m| m.state == Delivery::Delivered) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{all:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(site_fed.inbox.of_kind("question").unwrap().len(), 1);

    // A site that has stopped collecting is reported unreachable, and the
    // question is not left to be answered later.
    poller.abort();
    let e = icb_fed
        .request("RZZ", "question", json!({"q": 2}), Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(e.is_transient(), "{e}");
    assert!(icb_fed
        .outbox
        .list()
        .unwrap()
        .iter()
        .any(|m| m.state == Delivery::Failed));
    sender.abort();
    server.abort();
}
