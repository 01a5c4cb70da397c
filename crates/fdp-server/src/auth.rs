//! Who is asking: bearer tokens for the API, a session cookie for the UI.

use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use fdp_govern::Principal;
use maud::html;
use serde::Deserialize;

use crate::pages::layout;
use crate::AppState;

const COOKIE: &str = "fdp_session";

fn presented_token(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        if let Some(t) = v.strip_prefix("Bearer ") {
            return Some(t.trim().to_string());
        }
    }
    cookie(headers, COOKIE)
}

/// The value of the cookie `name`, if the request carries it.
pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// The principal a token names: an OIDC token from the identity provider
/// (when it looks like a JWT and the instance trusts one) or a local API
/// token. A refused OIDC token says why; an unknown local token does not,
/// so as not to help anyone guessing.
pub(crate) fn authenticate(state: &AppState, token: &str) -> Result<Principal, Option<String>> {
    match &state.oidc {
        Some(oidc) if fdp_govern::OidcVerifier::looks_like_jwt(token) => match oidc.verify(token) {
            Ok(p) => Ok(state.grants.federated(p)),
            Err(e) => {
                tracing::info!(reason = %e, "bearer token refused");
                Err(Some(e.to_string()))
            }
        },
        _ => state
            .tokens
            .verify(token)
            .map(|p| state.grants.local(p))
            .ok_or(None),
    }
}

/// Refuse any request without a valid principal; pages send people to the
/// login page, API calls get 401.
pub async fn require_principal(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let mut refusal = None;
    let principal = presented_token(req.headers()).and_then(|t| match authenticate(&state, &t) {
        Ok(p) => Some(p),
        Err(why) => {
            refusal = why;
            None
        }
    });
    match principal {
        Some(p) => {
            req.extensions_mut().insert(p);
            next.run(req).await
        }
        None => {
            // A person's browser asking for a page is sent to sign in;
            // anything else (an API client, a form post, a FHIR client, an
            // event stream) is told it needs a token.
            let wants_page = req.method() == axum::http::Method::GET
                && req
                    .headers()
                    .get(header::ACCEPT)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|a| a.contains("text/html"));
            let path = req.uri().path();
            let api = path.starts_with("/api/")
                || path == "/fhir"
                || path.starts_with("/fhir/")
                || path.ends_with("/events");
            if api || !wants_page {
                let (challenge, body) = match refusal {
                    // RFC 6750: say why, so a client knows to get a new token.
                    Some(why) => (
                        format!(
                            "Bearer error=\"invalid_token\", error_description=\"{}\"",
                            why.replace(['"', '\\'], "'")
                        ),
                        format!("the bearer token was refused: {why}"),
                    ),
                    None => (
                        "Bearer".to_string(),
                        "a valid token is required: send `Authorization: Bearer <token>`"
                            .to_string(),
                    ),
                };
                (
                    StatusCode::UNAUTHORIZED,
                    [(header::WWW_AUTHENTICATE, challenge)],
                    body,
                )
                    .into_response()
            } else {
                Redirect::to("/login").into_response()
            }
        }
    }
}

#[derive(Deserialize)]
pub struct LoginQuery {
    token: Option<String>,
    /// Where to go once signed in and a purpose is declared.
    next: Option<String>,
}

fn session_cookie(token: &str) -> String {
    // A shift's length, so that closing the browser tab does not sign a
    // bed manager out mid-shift, and no longer.
    format!("{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age=43200")
}

/// The login page; `/login?token=…&next=/bed-board` (the link `fdp demo`
/// prints) signs in directly.
pub async fn login_page(State(state): State<AppState>, Query(q): Query<LoginQuery>) -> Response {
    if let Some(t) = q.token {
        return login_with(&state, &t, q.next.as_deref());
    }
    login_form(None)
}

fn login_form(error: Option<&str>) -> Response {
    layout(
        "Sign in",
        None,
        html! {
            h1 { "Sign in" }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            form method="post" action="/login" {
                label for="token" { "Access token" }
                input #token type="password" name="token" autocomplete="current-password" required;
                button type="submit" { "Sign in" }
            }
            p.hint { "Tokens are created with " code { "fdp token create NAME" } "." }
        },
    )
    .into_response()
}

fn login_with(state: &AppState, token: &str, next: Option<&str>) -> Response {
    match state.tokens.verify(token) {
        // Signed in; next, the purpose checkpoint.
        Some(_) => (
            [(header::SET_COOKIE, session_cookie(token.trim()))],
            crate::checkpoint::to_checkpoint(&crate::checkpoint::safe_next(next)),
        )
            .into_response(),
        None => (
            StatusCode::UNAUTHORIZED,
            login_form(Some("That token is not valid.")),
        )
            .into_response(),
    }
}

#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
}

pub async fn login_submit(State(state): State<AppState>, Form(f): Form<LoginForm>) -> Response {
    login_with(&state, &f.token, None)
}

pub async fn logout() -> Response {
    // The declared purpose goes with the session.
    (
        axum::response::AppendHeaders([
            (
                header::SET_COOKIE,
                format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
            ),
            (
                header::SET_COOKIE,
                "fdp_purpose=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0".to_string(),
            ),
        ]),
        Redirect::to("/login"),
    )
        .into_response()
}

/// The principal the middleware attached.
pub fn principal(req_ext: &axum::http::Extensions) -> Principal {
    req_ext.get::<Principal>().cloned().unwrap_or(Principal {
        name: "unknown".into(),
        ..Principal::default()
    })
}

/// `GET /api/whoami`: the principal the instance sees for this request.
pub async fn whoami(req_ext: axum::http::Extensions) -> axum::Json<serde_json::Value> {
    let p = principal(&req_ext);
    axum::Json(serde_json::json!({
        "name": p.name,
        "roles": p.roles,
        "organisation": p.organisation,
    }))
}
