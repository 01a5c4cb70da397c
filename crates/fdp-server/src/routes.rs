//! The instance's HTTP routes, declared once: the router and the OpenAPI
//! document (`GET /openapi.json`) are both built from [`routes`], so the
//! document lists exactly what the server answers, and each operation's
//! method is the one its handler is mounted on.

use axum::handler::Handler;
use axum::routing::{self, MethodRouter};
use axum::Router;
use serde_json::{json, Map, Value};

use crate::{
    api, approvals, auth, capacity, checkpoint, federation, fhir, governed, marketplace,
    mutual_aid, objects, pages, products, referrals, returns, sources, sql, supplies, AppState,
};

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone: health checks, the login page, this document.
    Public,
    /// A principal: a bearer token (local or OIDC) or the session cookie.
    Principal,
}

/// One operation: a method on a path, with what it does.
pub struct Operation {
    pub method: &'static str,
    pub summary: &'static str,
    /// What the answer is: `json`, `html`, `fhir`, `text`, `events`.
    pub answers: &'static str,
    /// A JSON request body's schema, for the operations that take one.
    pub body: Option<Value>,
    router: MethodRouter<AppState>,
}

macro_rules! method {
    ($name:ident) => {
        fn $name<H, T>(summary: &'static str, answers: &'static str, handler: H) -> Operation
        where
            H: Handler<T, AppState>,
            T: 'static,
        {
            Operation {
                method: stringify!($name),
                summary,
                answers,
                body: None,
                router: routing::$name(handler),
            }
        }
    };
}
method!(get);
method!(post);
method!(put);
method!(delete);

impl Operation {
    fn with_body(mut self, schema: Value) -> Operation {
        self.body = Some(schema);
        self
    }
}

/// A path, who may call it, the area of the API it belongs to, and its
/// operations.
pub struct Route {
    pub path: &'static str,
    pub access: Access,
    pub tag: &'static str,
    pub operations: Vec<Operation>,
}

fn route(path: &'static str, tag: &'static str, operations: Vec<Operation>) -> Route {
    Route {
        path,
        access: Access::Principal,
        tag,
        operations,
    }
}

fn public(path: &'static str, tag: &'static str, operations: Vec<Operation>) -> Route {
    Route {
        path,
        access: Access::Public,
        tag,
        operations,
    }
}

fn sql_body() -> Value {
    json!({
        "type": "object",
        "required": ["purpose"],
        "additionalProperties": false,
        "properties": {
            "sql": {"type": "string", "description": "One query (SELECT, WITH, EXPLAIN); or, instead, `extract` and `file`."},
            "extract": {"type": "string", "description": "An extract the information-governance lead approved for the research `project`: its file's rows leave the instance, pseudonymised and shaped by the policy."},
            "file": {"type": "string", "description": "The extract's file to take."},
            "purpose": {"type": "string", "enum": ["direct-care", "operations", "planning", "research"]},
            "role": {"type": "string", "description": "The role to act in, when the principal holds several granted the purpose."},
            "project": {"type": "string", "description": "The approved project (research); picks the pseudonym key."},
            "justification": {"type": "string", "description": "Why, for purposes the policy marks sensitive."}
        }
    })
}

/// Every route the instance serves.
pub fn routes() -> Vec<Route> {
    vec![
        public(
            "/healthz",
            "instance",
            vec![get("Liveness: answers `ok`", "text", || async { "ok" })],
        ),
        public(
            "/openapi.json",
            "instance",
            vec![get("This document", "json", openapi)],
        ),
        public(
            "/login",
            "identity",
            vec![
                get("The sign-in page", "html", auth::login_page),
                post(
                    "Sign in with a token (a form post): begins a session, whose id the cookie holds",
                    "html",
                    auth::login_submit,
                ),
            ],
        ),
        route(
            "/logout",
            "identity",
            vec![post(
                "Sign out: ends the session, so its cookie signs no one in again",
                "html",
                auth::logout,
            )],
        ),
        route(
            "/purpose",
            "identity",
            vec![
                get(
                    "The purpose checkpoint: declare what you are working on (and why, for sensitive purposes)",
                    "html",
                    checkpoint::page,
                ),
                post(
                    "Declare a purpose (form); checked against the policy and audited",
                    "html",
                    checkpoint::submit,
                ),
            ],
        ),
        route(
            "/api/whoami",
            "identity",
            vec![get(
                "The principal the instance sees: name, roles, organisation",
                "json",
                auth::whoami,
            )],
        ),
        route(
            "/",
            "pages",
            vec![get("Home: the instance at a glance", "html", pages::home)],
        ),
        route(
            "/bed-board",
            "care coordination",
            vec![get("The bed board page", "html", pages::bed_board)],
        ),
        route(
            "/bed-board/events",
            "care coordination",
            vec![get(
                "Live bed board changes (server-sent events)",
                "events",
                api::bed_board_events,
            )],
        ),
        route(
            "/bed-board/admission/{id}",
            "care coordination",
            vec![get(
                "One admission: the patient's ward stays and discharge readiness",
                "html",
                pages::admission,
            )],
        ),
        route(
            "/bed-board/admission/{id}/readiness",
            "care coordination",
            vec![post(
                "Record discharge readiness (form)",
                "html",
                pages::readiness_form,
            )],
        ),
        route(
            "/bed-board/admission/{id}/referral",
            "care coordination",
            vec![post(
                "Refer the patient to a care provider's instance (form)",
                "html",
                pages::referral_form,
            )],
        ),
        route(
            "/bed-board/bed-status",
            "care coordination",
            vec![post(
                "Set a bed's status (form)",
                "html",
                pages::bed_status_form,
            )],
        ),
        route(
            "/api/bed-board",
            "care coordination",
            vec![get(
                "The bed board: every bed and who is in it",
                "json",
                api::bed_board,
            )],
        ),
        route(
            "/api/admissions/{id}/discharge-readiness",
            "care coordination",
            vec![post(
                "Record an admission's discharge readiness",
                "json",
                api::set_readiness,
            )],
        ),
        route(
            "/api/beds/{id}/status",
            "care coordination",
            vec![post(
                "Set a bed's status (open, closed, cleaning)",
                "json",
                api::set_bed_status,
            )],
        ),
        route(
            "/federation",
            "federation",
            vec![get(
                "This instance in the federation: peers, and every message sent with where it has got to",
                "html",
                federation::federation_page,
            )],
        ),
        route(
            "/federation/approvals",
            "federation",
            vec![
                get(
                    "Every question peers have asked this instance, word for word, and the IG lead's decisions",
                    "html",
                    approvals::page,
                ),
                post(
                    "Approve a question as it was asked (the IG lead; audited)",
                    "html",
                    approvals::approve,
                ),
            ],
        ),
        route(
            "/federation/approvals/withdraw",
            "federation",
            vec![post(
                "Withdraw an approval (the IG lead; audited); the question is declined from then on",
                "html",
                approvals::withdraw,
            )],
        ),
        route(
            "/referrals",
            "federation",
            vec![get(
                "Discharge referrals received (to accept or decline) and sent, with where each has got to",
                "html",
                referrals::page,
            )],
        ),
        route(
            "/mutual-aid",
            "elective recovery",
            vec![get(
                "Mutual aid: slots other trusts offer with the patients on this list each suits (send a booking request), requests received (accept or decline) and sent",
                "html",
                mutual_aid::page,
            )],
        ),
        route(
            "/mutual-aid/requests",
            "elective recovery",
            vec![post(
                "Send a booking request from the page, with the patient's choice",
                "html",
                mutual_aid::request_form,
            )],
        ),
        route(
            "/mutual-aid/requests/{id}/decision",
            "elective recovery",
            vec![post(
                "Accept or decline a booking request from the page; the asking trust is told",
                "html",
                mutual_aid::decision_form,
            )],
        ),
        route(
            "/mutual-aid/publish",
            "elective recovery",
            vec![post(
                "Publish this trust's free theatre time inside the lock to the ICB, from the page",
                "html",
                mutual_aid::publish_form,
            )],
        ),
        route(
            "/supplies/area",
            "supply chain",
            vec![get(
                "Supplies across the ICB: per item where spare stock sits and where it is needed; on a trust, offers to make, received (accept or decline) and sent",
                "html",
                supplies::page,
            )],
        ),
        route(
            "/supplies/publish",
            "supply chain",
            vec![post(
                "Publish this trust's supplies position to the ICB, from the page",
                "html",
                supplies::publish_form,
            )],
        ),
        route(
            "/supplies/offers",
            "supply chain",
            vec![post(
                "Offer another trust stock this trust can spare, from the page",
                "html",
                supplies::offer_form,
            )],
        ),
        route(
            "/supplies/offers/{id}/decision",
            "supply chain",
            vec![post(
                "Accept or decline a supply offer from the page; the offering trust is told",
                "html",
                supplies::decision_form,
            )],
        ),
        route(
            "/referrals/{id}/decision",
            "federation",
            vec![post(
                "Accept or decline a referral from the page; the trust is told through the outbox",
                "html",
                referrals::decision_form,
            )],
        ),
        route(
            "/api/products",
            "products",
            vec![get(
                "Every product this instance serves: what it is, the purposes it is for, the tables and columns it reads, its views and their parameters",
                "json",
                products::list,
            )],
        ),
        route(
            "/api/products/{id}/{view}",
            "products",
            vec![get(
                "A product's view under the caller's purpose (X-Purpose): its columns, each naming where it comes from, and rows; format=csv for a CSV file; other query parameters are the view's",
                "json",
                products::view_api,
            )],
        ),
        route(
            "/api/products/{id}/actions/{action}/{target}",
            "products",
            vec![post(
                "Make a product's action (governed write-back) on what `target` names, under the caller's purpose (X-Purpose); the body is the action's inputs as its manifest declares them; answered with what was recorded",
                "json",
                products::action_api,
            )
            .with_body(json!({"type": "object", "description": "The action's inputs, by name, typed as the product's manifest declares"}))],
        ),
        route(
            "/api/v2/ontologies/{ontology}/objects/{objectType}",
            "objects",
            vec![get(
                "The FDP object API (NHS England's published ontology API): a page of objects of one type under the caller's purpose (X-Purpose); pageSize, pageToken, select, orderBy",
                "json",
                objects::list,
            )],
        ),
        route(
            "/api/v2/ontologies/{ontology}/objects/{objectType}/search",
            "objects",
            vec![post(
                "Objects matching a `where` query (eq, gt, gte, lt, lte, isNull, in, startsWith, contains, the term queries, and, or, not), ordered and paged",
                "json",
                objects::search,
            )
            .with_body(json!({"type": "object", "description": "The published SearchObjectsRequestV2: where, orderBy, pageSize, pageToken, select"}))],
        ),
        route(
            "/api/v2/ontologies/{ontology}/objects/{objectType}/count",
            "objects",
            vec![post(
                "How many objects of one type there are, under the caller's purpose (disclosure-controlled under planning and research)",
                "json",
                objects::count,
            )],
        ),
        route(
            "/api/v2/ontologies/{ontology}/objects/{objectType}/aggregate",
            "objects",
            vec![post(
                "Metrics (count, min, max, sum, avg, distinct, percentile) over objects, grouped exactly, by width, by ranges or by duration",
                "json",
                objects::aggregate,
            )
            .with_body(json!({"type": "object", "description": "The published AggregateObjectsRequestV2: aggregation, groupBy, where, accuracy"}))],
        ),
        route(
            "/api/v2/ontologies/{ontology}/objects/{objectType}/{primaryKey}",
            "objects",
            vec![get(
                "One object by its primary key; select narrows its properties",
                "json",
                objects::get_one,
            )],
        ),
        route(
            "/api/v2/ontologies/{ontology}/objects/{objectType}/{primaryKey}/links/{linkType}",
            "objects",
            vec![get(
                "The objects one object links to (a ward stay's admission, an admission's ward stays), paged",
                "json",
                objects::links,
            )],
        ),
        route(
            "/api/v2/ontologies/{ontology}/objects/{objectType}/{primaryKey}/links/{linkType}/{linkedObjectPrimaryKey}",
            "objects",
            vec![get(
                "One linked object by its primary key",
                "json",
                objects::linked,
            )],
        ),
        route(
            "/marketplace",
            "products",
            vec![get(
                "Products peers have offered this instance: what each reads, for which purposes, and whether it is new, an update, approved or in use",
                "html",
                marketplace::page,
            )],
        ),
        route(
            "/api/marketplace",
            "products",
            vec![get(
                "The products offered to this instance, as JSON",
                "json",
                marketplace::api,
            )],
        ),
        route(
            "/products",
            "products",
            vec![get("Every product and its views", "html", products::index)],
        ),
        route(
            "/products/{id}/actions/{action}/{target}",
            "products",
            vec![post(
                "Make a product's action from a page's form, under the purpose declared at the checkpoint; then back to the page it was made from",
                "html",
                products::action_form,
            )],
        ),
        route(
            "/products/{id}/{view}",
            "products",
            vec![get(
                "A product's view as a page, under the purpose declared at the checkpoint",
                "html",
                products::view_page,
            )],
        ),
        route(
            "/capacity",
            "federation",
            vec![
                get(
                    "Free places (or theatre slots) this instance offers, with a form to update them; on an ICB, everything gathered from its members",
                    "html",
                    capacity::page,
                ),
                post(
                    "Update this instance's free places from the page and publish them to the ICB",
                    "html",
                    capacity::form,
                ),
            ],
        ),
        route(
            "/api/capacity",
            "federation",
            vec![
                get(
                    "What this instance offers, and on an ICB what it has gathered from each publisher with the figure's age",
                    "json",
                    capacity::get_capacity,
                ),
                put(
                    "Replace this instance's offers (care-home places, virtual-ward places, theatre slots) and publish them to the ICB; a change to care_capacity",
                    "json",
                    capacity::put_capacity,
                ),
            ],
        ),
        route(
            "/returns",
            "federation",
            vec![get(
                "The daily operational return: on a collecting instance each member's submission and the figures across them; on a member its own return",
                "html",
                returns::page,
            )],
        ),
        route(
            "/api/returns/daily",
            "federation",
            vec![get(
                "This instance's own daily operational return for a census instant (query census_at, RFC 3339; default the latest 08:00), computed under the caller's purpose (default planning)",
                "json",
                returns::own_return,
            )],
        ),
        route(
            "/api/returns/collected",
            "federation",
            vec![get(
                "The returns this instance has collected from its members, with each member's submission status (query census_at for one)",
                "json",
                returns::collected,
            )],
        ),
        route(
            "/api/federation/questions",
            "federation",
            vec![post(
                "Ask every peer a federated question and combine their answers (who answered, declined, could not be reached)",
                "json",
                federation::ask_question,
            )
            .with_body(json!({
                "type": "object",
                "required": ["name", "version", "purpose", "sql"],
                "additionalProperties": false,
                "properties": {
                    "name": {"type": "string"},
                    "version": {"type": "integer"},
                    "purpose": {"type": "string", "enum": ["direct-care", "operations", "planning", "research"]},
                    "sql": {"type": "string"},
                    "description": {"type": "string"}
                }
            }))],
        ),
        route(
            "/api/referrals",
            "care coordination",
            vec![
                get(
                    "Discharge referrals sent and received, and where each has got to",
                    "json",
                    referrals::list,
                ),
                post(
                    "Refer an admitted patient to a care provider's instance (direct care; the record goes through the outbox)",
                    "json",
                    referrals::refer,
                )
                .with_body(json!({
                    "type": "object",
                    "required": ["admission_id", "to", "lawful_basis", "summary"],
                    "additionalProperties": false,
                    "properties": {
                        "admission_id": {"type": "string"},
                        "to": {"type": "string", "description": "The care provider's ODS code."},
                        "lawful_basis": {"type": "string"},
                        "care_needs": {"type": "array", "items": {"type": "string"}},
                        "summary": {"type": "string", "description": "The discharge summary."}
                    }
                })),
            ],
        ),
        route(
            "/api/capacity/theatre-slots",
            "elective recovery",
            vec![post(
                "Derive this trust's theatre-slot offers from the free time on its sessions inside the two-week lock and publish them to the ICB (reads the theatre tables; a change to care_capacity)",
                "json",
                mutual_aid::publish_theatre_slots,
            )],
        ),
        route(
            "/api/supplies/publish",
            "supply chain",
            vec![post(
                "Publish this trust's supplies position (the supply-chain product's demand view: use, stock, spare once its own wards are met, still to order) to the ICB; needs a grant to change stock_movement",
                "json",
                supplies::publish,
            )],
        ),
        route(
            "/api/supplies/area",
            "supply chain",
            vec![get(
                "Every trust's latest supplies position and, per item across the ICB, where spare stock sits, where it is needed and what to buy together (on a trust, as its ICB answers); format=csv for the items as CSV",
                "json",
                supplies::area_api,
            )],
        ),
        route(
            "/api/supplies/offers",
            "supply chain",
            vec![
                get(
                    "Supply offers sent and received between trusts, and where each has got to",
                    "json",
                    supplies::offers,
                ),
                post(
                    "Offer another trust stock this trust can spare (no more than the location's spare once this trust's own locations are met, less what is already offered); sent through the outbox, audited",
                    "json",
                    supplies::offer,
                )
                .with_body(json!({
                    "type": "object",
                    "required": ["to", "item_code", "from_location", "quantity"],
                    "additionalProperties": false,
                    "properties": {
                        "to": {"type": "string", "description": "The trust offered to (ODS code)."},
                        "item_code": {"type": "string", "description": "The item (NPC)."},
                        "from_location": {"type": "string", "description": "This trust's location the stock is at."},
                        "quantity": {"type": "number", "description": "Whole units."},
                        "note": {"type": "string"}
                    }
                })),
            ],
        ),
        route(
            "/api/supplies/offers/{id}/decision",
            "supply chain",
            vec![post(
                "Accept a supply offer onto one of this trust's locations (held as on order; the offering trust records it leaving) or decline it; the offering trust is told",
                "json",
                supplies::decide,
            )
            .with_body(json!({
                "type": "object",
                "required": ["accept"],
                "additionalProperties": false,
                "properties": {
                    "accept": {"type": "boolean"},
                    "to_location": {"type": "string", "description": "Where the stock goes; by default the location that most needs it."},
                    "reason": {"type": "string"}
                }
            }))],
        ),
        route(
            "/api/mutual-aid/slots",
            "elective recovery",
            vec![get(
                "Theatre slots other trusts offer across the ICB, each with the patients on this trust's list it suits, greatest need first",
                "json",
                mutual_aid::slots,
            )],
        ),
        route(
            "/api/mutual-aid/requests",
            "elective recovery",
            vec![
                get(
                    "Mutual-aid booking requests sent and received, and where each has got to",
                    "json",
                    mutual_aid::list,
                ),
                post(
                    "Ask another trust to book a patient on this list into a slot it offers, with the patient's choice; the pathway's record goes through the outbox (a change to booking_request)",
                    "json",
                    mutual_aid::request,
                )
                .with_body(json!({
                    "type": "object",
                    "required": ["to", "session_id", "eal_id", "patient_choice", "lawful_basis"],
                    "additionalProperties": false,
                    "properties": {
                        "to": {"type": "string", "description": "The trust offering the slot (ODS code)."},
                        "session_id": {"type": "string", "description": "Its theatre session."},
                        "eal_id": {"type": "string", "description": "The entry on this trust's list."},
                        "patient_choice": {"type": "string", "description": "What the patient said when offered the slot."},
                        "lawful_basis": {"type": "string"}
                    }
                })),
            ],
        ),
        route(
            "/api/mutual-aid/requests/{id}/decision",
            "elective recovery",
            vec![post(
                "Accept (the patient joins this trust's list, the clock carried over, RTT status 21) or decline a booking request; the asking trust is told",
                "json",
                mutual_aid::decide,
            )
            .with_body(json!({
                "type": "object",
                "required": ["accept"],
                "additionalProperties": false,
                "properties": {"accept": {"type": "boolean"}, "reason": {"type": "string"}}
            }))],
        ),
        route(
            "/api/referrals/{id}/decision",
            "care coordination",
            vec![post(
                "Accept or decline a referral received (the referring trust is told)",
                "json",
                referrals::decide,
            )
            .with_body(json!({
                "type": "object",
                "required": ["accept"],
                "additionalProperties": false,
                "properties": {"accept": {"type": "boolean"}, "reason": {"type": "string"}}
            }))],
        ),
        route(
            "/quarantine",
            "sources",
            vec![get(
                "Everything refused, from every source (page)",
                "html",
                pages::quarantine,
            )],
        ),
        route(
            "/api/quarantine",
            "sources",
            vec![get(
                "Everything refused, from every source",
                "json",
                api::quarantine,
            )],
        ),
        route(
            "/sources",
            "sources",
            vec![get(
                "Sources and their runs (page)",
                "html",
                sources::sources_page,
            )],
        ),
        route(
            "/api/sources",
            "sources",
            vec![get(
                "Sources: feeds and what they delivered",
                "json",
                api::sources,
            )],
        ),
        route(
            "/api/runs",
            "sources",
            vec![get("Ingest runs", "json", sources::runs)],
        ),
        route(
            "/tables",
            "tables",
            vec![get(
                "The tables and their versions (page)",
                "html",
                sources::tables_page,
            )],
        ),
        route(
            "/tables/{name}",
            "tables",
            vec![get(
                "One table's versions and lineage (page)",
                "html",
                sources::table_page,
            )],
        ),
        route(
            "/tables/{name}/rows",
            "tables",
            vec![get(
                "A page of a table's rows under the declared purpose",
                "html",
                governed::table_rows,
            )],
        ),
        route(
            "/tables/{name}/download",
            "tables",
            vec![get(
                "A table under the declared purpose as a CSV file (an audited export, disclosure-controlled for planning and research)",
                "csv",
                governed::table_download,
            )],
        ),
        route(
            "/reidentify",
            "governance",
            vec![post(
                "Re-identification for direct care: the patient a pseudonym stands for (justified, audited)",
                "json",
                governed::reidentify,
            )
            .with_body(json!({
                "type": "object",
                "required": ["pseudonym", "made_for", "justification"],
                "additionalProperties": false,
                "properties": {
                    "pseudonym": {"type": "string", "description": "As a planning or research answer gave it (p1-…)."},
                    "made_for": {"type": "string", "enum": ["direct-care", "operations", "planning", "research"], "description": "The purpose whose key made the pseudonym."},
                    "project": {"type": "string", "description": "The project whose key made it (default: the purpose's name)."},
                    "justification": {"type": "string", "description": "Why the patient's care needs them identified."},
                    "role": {"type": "string"}
                }
            }))],
        ),
        route(
            "/audit",
            "governance",
            vec![get(
                "The audit, searchable, with the opt-out's effect per table (roles that review the audit)",
                "html",
                governed::audit_page,
            )],
        ),
        route(
            "/api/tables/{name}/history",
            "tables",
            vec![get("One table's versions", "json", sources::table_history)],
        ),
        route(
            "/lineage",
            "tables",
            vec![get(
                "Which raw versions each canonical version came from (page)",
                "html",
                sources::lineage_page,
            )],
        ),
        route(
            "/api/lineage",
            "tables",
            vec![get(
                "Which raw versions each canonical version came from",
                "json",
                sources::lineage_json,
            )],
        ),
        route(
            "/sql",
            "sql",
            vec![post(
                "Run one query in a governed session for a declared purpose",
                "json",
                sql::query,
            )
            .with_body(sql_body())],
        ),
        route(
            "/export",
            "sql",
            vec![post(
                "A query's answer as a CSV file, under a declared purpose (an audited export, disclosure-controlled for planning and research), or a file of an approved research extract",
                "csv",
                sql::export,
            )
            .with_body(sql_body())],
        ),
        route(
            "/fhir",
            "fhir",
            vec![post(
                "A FHIR batch or transaction Bundle",
                "fhir",
                fhir::bundle,
            )],
        ),
        route(
            "/fhir/metadata",
            "fhir",
            vec![get("The CapabilityStatement", "fhir", fhir::metadata)],
        ),
        route(
            "/fhir/$import",
            "fhir",
            vec![post(
                "Start a bulk import of NDJSON files",
                "fhir",
                fhir::import::start,
            )],
        ),
        route(
            "/fhir/$import-status/{id}",
            "fhir",
            vec![get("A bulk import's progress", "fhir", fhir::import::status)],
        ),
        route(
            "/fhir/$import-status/{id}/errors",
            "fhir",
            vec![get(
                "A bulk import's refused lines",
                "fhir",
                fhir::import::errors,
            )],
        ),
        route(
            "/fhir/{rt}",
            "fhir",
            vec![
                get("Search resources of a type", "fhir", fhir::search),
                post("Create a resource", "fhir", fhir::create),
            ],
        ),
        route(
            "/fhir/{rt}/{id}",
            "fhir",
            vec![
                get("Read a resource", "fhir", fhir::read),
                put("Update (or create) a resource", "fhir", fhir::update),
                delete("Delete a resource", "fhir", fhir::delete),
            ],
        ),
        route(
            "/fhir/{rt}/{id}/_history",
            "fhir",
            vec![get("A resource's versions", "fhir", fhir::history)],
        ),
        route(
            "/fhir/{rt}/{id}/_history/{vid}",
            "fhir",
            vec![get("One version of a resource", "fhir", fhir::vread)],
        ),
    ]
}

/// The router: public routes as they are, the rest behind
/// [`auth::require_principal`].
pub fn router(state: AppState) -> Router {
    let mut public_routes = Router::new();
    let mut protected = Router::new();
    for r in routes() {
        let methods = r
            .operations
            .into_iter()
            .map(|o| o.router)
            .reduce(MethodRouter::merge)
            .expect("a route has operations");
        match r.access {
            Access::Public => public_routes = public_routes.route(r.path, methods),
            Access::Principal => protected = protected.route(r.path, methods),
        }
    }
    let protected = protected.layer(axum::middleware::from_fn_with_state(
        state.clone(),
        auth::require_principal,
    ));
    public_routes.merge(protected).with_state(state)
}

fn media_type(answers: &str) -> &'static str {
    match answers {
        "json" => "application/json",
        "html" => "text/html",
        "fhir" => "application/fhir+json",
        "events" => "text/event-stream",
        "csv" => "text/csv",
        _ => "text/plain",
    }
}

/// The OpenAPI 3.1 document for [`routes`].
pub fn document() -> Value {
    let mut paths = Map::new();
    for r in routes() {
        let params: Vec<Value> = r
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| {
                json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}})
            })
            .collect();
        let mut item = Map::new();
        for o in r.operations {
            let mut responses = Map::new();
            responses.insert(
                "200".into(),
                json!({"description": "OK", "content": {media_type(o.answers): {}}}),
            );
            if r.access == Access::Principal {
                responses.insert(
                    "401".into(),
                    json!({"description": "No valid token: send `Authorization: Bearer <token>`"}),
                );
            }
            let mut op = json!({
                "summary": o.summary,
                "operationId": format!("{} {}", o.method, r.path),
                "tags": [r.tag],
                "responses": responses,
            });
            if !params.is_empty() {
                op["parameters"] = Value::Array(params.clone());
            }
            op["security"] = match r.access {
                Access::Public => json!([]),
                Access::Principal => json!([{"bearer": []}, {"session": []}]),
            };
            if let Some(schema) = o.body {
                op["requestBody"] = json!({
                    "required": true,
                    "content": {"application/json": {"schema": schema}}
                });
            }
            item.insert(o.method.into(), op);
        }
        paths.insert(r.path.into(), Value::Object(item));
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "OpenFDP instance API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The HTTP API of one OpenFDP instance. Every operation except the health check, the sign-in page and this document needs a principal: a bearer token (a local API token or an OIDC token from the organisation's identity provider) or the session cookie set at sign-in. Reads of tables go through a governed session for a declared purpose.",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"}
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "A local API token (`fdp token create`) or an OIDC access token"},
                "session": {"type": "apiKey", "in": "cookie", "name": "fdp_session"}
            }
        }
    })
}

async fn openapi() -> axum::Json<Value> {
    axum::Json(document())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented_once_with_its_methods() {
        let doc = document();
        let paths = doc["paths"].as_object().unwrap();
        let routes = routes();
        assert_eq!(paths.len(), routes.len(), "a path declared twice");
        for r in &routes {
            let item = &paths[r.path];
            for o in &r.operations {
                let op = &item[o.method];
                assert!(op.is_object(), "{} {}", o.method, r.path);
                let open = op["security"].as_array().unwrap().is_empty();
                assert_eq!(open, r.access == Access::Public, "{} {}", o.method, r.path);
            }
        }
        let public: Vec<&str> = routes
            .iter()
            .filter(|r| r.access == Access::Public)
            .map(|r| r.path)
            .collect();
        assert_eq!(public, ["/healthz", "/openapi.json", "/login"]);
    }
}
