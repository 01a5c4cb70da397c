//! Who is asking: bearer tokens for the API, a session cookie for the UI.
//!
//! A browser signs in by posting a token to `/login`. The cookie it gets
//! holds a random session id, never the token: the id lasts a shift at most,
//! is forgotten at sign-out, and is `Secure` when the instance serves TLS.
//! A token in a URL is refused, since URLs end up in browser history and
//! proxy logs.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use fdp_govern::Principal;
use maud::html;
use serde::Deserialize;

use crate::ui::layout;
use crate::AppState;

const COOKIE: &str = "fdp_session";

/// The cookie holding the id of the purpose declared at the checkpoint;
/// signing out ends it with the session.
pub(crate) const PURPOSE_COOKIE: &str = "fdp_purpose";

/// A shift: long enough that closing the browser tab does not sign a bed
/// manager out mid-shift, and no longer.
pub const SHIFT: Duration = Duration::from_secs(12 * 3600);

/// Sessions kept at most; past this the oldest is forgotten first.
const MAX_SESSIONS: usize = 10_000;

/// Signed-in browsers: a random id, given in the cookie, for the token that
/// signed in. Kept in memory only, so a restart signs everyone out.
pub struct BrowserSessions {
    by_id: Mutex<HashMap<String, (String, Instant)>>,
    lasts: Duration,
}

impl BrowserSessions {
    pub fn new(lasts: Duration) -> BrowserSessions {
        BrowserSessions {
            by_id: Mutex::new(HashMap::new()),
            lasts,
        }
    }

    /// Begin a session for `token`; its id, for the cookie.
    fn begin(&self, token: &str) -> String {
        let id = fdp_govern::tokens::random_hex(32);
        let mut map = self.by_id.lock().expect("sessions lock");
        map.retain(|_, (_, began)| began.elapsed() < self.lasts);
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, (_, began))| *began)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(id.clone(), (token.to_string(), Instant::now()));
        id
    }

    /// The token session `id` was begun with, while it lasts.
    fn token_of(&self, id: &str) -> Option<String> {
        let mut map = self.by_id.lock().expect("sessions lock");
        match map.get(id) {
            Some((token, began)) if began.elapsed() < self.lasts => Some(token.clone()),
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }

    /// Forget session `id`: its cookie signs no one in again.
    fn end(&self, id: &str) {
        self.by_id.lock().expect("sessions lock").remove(id);
    }
}

/// A `Set-Cookie` value: never readable by scripts, never sent from another
/// site, and `Secure` when the instance serves TLS.
pub(crate) fn set_cookie(state: &AppState, name: &str, value: &str, max_age: Duration) -> String {
    let secure = if state.https { "; Secure" } else { "" };
    format!(
        "{name}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{secure}",
        max_age.as_secs()
    )
}

fn presented_token(state: &AppState, headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        if let Some(t) = v.strip_prefix("Bearer ") {
            return Some(t.trim().to_string());
        }
    }
    state.sessions.token_of(&cookie(headers, COOKIE)?)
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
    let principal =
        presented_token(&state, req.headers()).and_then(|t| match authenticate(&state, &t) {
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
    /// Refused if present: see the module's documentation.
    token: Option<String>,
    /// Where to go once signed in and a purpose is declared.
    next: Option<String>,
}

/// The sign-in page. A token in the URL is refused, and signs no one in.
pub async fn login_page(Query(q): Query<LoginQuery>) -> Response {
    let next = q.next.as_deref();
    if q.token.is_some() {
        return (
            StatusCode::BAD_REQUEST,
            login_form(
                next,
                Some("A token in a link is not accepted: links are kept in browser history and proxy logs. Paste the token here instead."),
            ),
        )
            .into_response();
    }
    login_form(next, None)
}

fn login_form(next: Option<&str>, error: Option<&str>) -> Response {
    layout(
        "Sign in",
        None,
        html! {
            h1 { "Sign in" }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            form method="post" action="/login" {
                label for="token" { "Access token" }
                input #token type="password" name="token" autocomplete="current-password" required;
                @if let Some(n) = next { input type="hidden" name="next" value=(n); }
                button type="submit" { "Sign in" }
            }
            p.hint { "Tokens are created with " code { "fdp token create NAME" } "." }
        },
    )
    .into_response()
}

#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
    next: Option<String>,
}

/// `POST /login`: a valid token begins a browser session.
pub async fn login_submit(State(state): State<AppState>, Form(f): Form<LoginForm>) -> Response {
    let token = f.token.trim();
    if state.tokens.verify(token).is_none() {
        return (
            StatusCode::UNAUTHORIZED,
            login_form(f.next.as_deref(), Some("That token is not valid.")),
        )
            .into_response();
    }
    let id = state.sessions.begin(token);
    // Signed in; next, the purpose checkpoint.
    (
        [(header::SET_COOKIE, set_cookie(&state, COOKIE, &id, SHIFT))],
        crate::ui::to_checkpoint(&crate::ui::safe_next(f.next.as_deref())),
    )
        .into_response()
}

/// Sign out: the session is forgotten here, not only in the browser, so a
/// copy of the cookie signs no one in.
pub async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(id) = cookie(&headers, COOKIE) {
        state.sessions.end(&id);
    }
    // The declared purpose goes with the session.
    (
        axum::response::AppendHeaders([
            (
                header::SET_COOKIE,
                set_cookie(&state, COOKIE, "", Duration::ZERO),
            ),
            (
                header::SET_COOKIE,
                set_cookie(&state, PURPOSE_COOKIE, "", Duration::ZERO),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_lasts_its_time_ends_at_sign_out_and_is_not_the_token() {
        let sessions = BrowserSessions::new(Duration::from_millis(200));
        let a = sessions.begin("fdp_token_a");
        let b = sessions.begin("fdp_token_a");
        assert_ne!(a, b, "each sign-in is a new session");
        assert!(!a.contains("fdp_token_a") && a.len() == 64, "{a}");
        assert_eq!(sessions.token_of(&a).as_deref(), Some("fdp_token_a"));
        assert_eq!(
            sessions.token_of("fdp_token_a"),
            None,
            "a token is not a session id"
        );
        sessions.end(&a);
        assert_eq!(sessions.token_of(&a), None, "ended at sign-out");
        assert!(sessions.token_of(&b).is_some(), "the other session goes on");
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(sessions.token_of(&b), None, "expired");
    }
}
