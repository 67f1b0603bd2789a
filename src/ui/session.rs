//! Signing in and out of the page, and who reads each page.
//!
//! Sign-in takes one of the API_TOKENS in a form (POST: the token never is in a URL) and sets a
//! signed session cookie that stands for it (`http::auth`: the same extractor the read API uses
//! accepts it on GET). State-changing forms are checked twice beyond SameSite=Strict: their
//! origin (Origin, else Referer, must be this host; Sec-Fetch-Site, when sent, same-origin), and,
//! once signed in, a form token bound to the session.

use axum::body::Bytes;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use super::{bare, html_response, Frame, UiError};
use crate::http::auth::{SESSION_COOKIE, SESSION_SECS};
use crate::http::AppState;
use crate::store::Scope;

/// The reader of a page, and the frame the page is drawn in. Without a valid session (or bearer
/// token), the page answers with a redirect to the sign-in form.
pub struct UiReader {
    pub scope: Scope,
    pub frame: Frame,
}

impl FromRequestParts<AppState> for UiReader {
    type Rejection = UiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let next = parts.uri.path_and_query().map_or("/ui/tickets", |p| p.as_str()).to_owned();
        let scope = state.api_auth.reader(parts).map_err(|_| UiError::SignIn { next })?;
        let sign_out_token = (!state.api_auth.is_open()).then(|| state.api_auth.form_token(&parts.headers, "sign-out"));
        Ok(UiReader { scope: scope.clone(), frame: Frame { scope, sign_out_token } })
    }
}

/// Where to go after signing in: a page of ours, never another site (`//evil`, `/\evil`).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with("/ui") && !n.contains(['\\', '\r', '\n']) => n.to_owned(),
        _ => "/ui/tickets".to_owned(),
    }
}

pub fn encode_next(next: &str) -> String {
    serde_urlencoded::to_string([("", next)]).map(|s| s[1..].to_owned()).unwrap_or_default()
}

#[derive(Deserialize)]
pub struct FormQuery {
    next: Option<String>,
}

pub async fn form(State(app): State<AppState>, uri: Uri) -> Response {
    let next = serde_urlencoded::from_str::<FormQuery>(uri.query().unwrap_or("")).ok().and_then(|q| q.next);
    if app.api_auth.is_open() {
        return html_response(
            StatusCode::OK,
            bare(
                "Sign in",
                html! {
                    section.card {
                        h1 { "No sign-in needed" }
                        p { "This service runs without " code { "API_TOKENS" } ": every page is open to anyone who can reach it." }
                        p { a href=(safe_next(next.as_deref())) { "Continue" } }
                    }
                },
            ),
        );
    }
    sign_in_page(StatusCode::OK, &safe_next(next.as_deref()), None)
}

fn sign_in_page(status: StatusCode, next: &str, problem: Option<&str>) -> Response {
    html_response(
        status,
        bare(
            "Sign in",
            html! {
                section.card {
                    h1 { "Sign in" }
                    p { "Paste one of the service's " code { "API_TOKENS" } ". A token bound to a tenant shows that tenant only." }
                    @if let Some(problem) = problem {
                        p.problem role="alert" { (problem) }
                    }
                    form method="post" action="/ui/sign-in" {
                        input type="hidden" name="next" value=(next);
                        label for="token" { "API token" }
                        input #token type="password" name="token" autocomplete="current-password" required autofocus;
                        button type="submit" { "Sign in" }
                    }
                    p.hint { "The session lasts 12 hours, or until the tokens are changed." }
                }
            },
        ),
    )
}

#[derive(Deserialize)]
struct SignInForm {
    token: String,
    next: Option<String>,
}

pub async fn sign_in(State(app): State<AppState>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    if !same_origin(&uri, &headers) {
        return forbidden();
    }
    let Ok(form) = serde_urlencoded::from_bytes::<SignInForm>(&body) else {
        return sign_in_page(StatusCode::BAD_REQUEST, "/ui/tickets", Some("The form was not complete: paste a token."));
    };
    let next = safe_next(form.next.as_deref());
    if app.api_auth.is_open() {
        return Redirect::to(&next).into_response();
    }
    let Some((_, cookie)) = app.api_auth.sign_in(&form.token) else {
        return sign_in_page(
            StatusCode::UNAUTHORIZED,
            &next,
            Some("That token is not one of the service's API_TOKENS. Check it and try again."),
        );
    };
    let secure = if over_tls(&headers) { "; Secure" } else { "" };
    let set = format!("{SESSION_COOKIE}={cookie}; Path=/; HttpOnly; SameSite=Strict; Max-Age={SESSION_SECS}{secure}");
    let mut res = Redirect::to(&next).into_response();
    if let Ok(v) = HeaderValue::from_str(&set) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

#[derive(Deserialize)]
struct TokenForm {
    form_token: String,
}

pub async fn sign_out(State(app): State<AppState>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    if !same_origin(&uri, &headers) || !form_token_ok(&app, &headers, "sign-out", &body) {
        return forbidden();
    }
    let secure = if over_tls(&headers) { "; Secure" } else { "" };
    let clear = format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}");
    let mut res = Redirect::to("/ui/sign-in").into_response();
    if let Ok(v) = HeaderValue::from_str(&clear) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

/// Whether a form's `form_token` field is the session's for `purpose`.
pub fn form_token_ok(app: &AppState, headers: &HeaderMap, purpose: &str, body: &[u8]) -> bool {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .ok()
        .and_then(|fields| {
            fields.into_iter().find(|(k, _)| k == "form_token").map(|(_, v)| TokenForm { form_token: v })
        })
        .is_some_and(|f| app.api_auth.check_form_token(headers, purpose, &f.form_token))
}

pub fn forbidden() -> Response {
    html_response(
        StatusCode::FORBIDDEN,
        bare(
            "Refused",
            html! {
                section.error role="alert" {
                    h1 { "Refused" }
                    p { "This form did not come from this site's own page, or the page is too old. Reload the page and try again." }
                    p { a href="/ui/tickets" { "Back to the tickets" } }
                }
            },
        ),
    )
}

/// The request came from a page of this site: Sec-Fetch-Site, when the browser sends it, says
/// same-origin; and Origin (else Referer) names this host. A request with neither is refused:
/// every browser that runs the page sends Origin with a POST.
pub fn same_origin(uri: &Uri, headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        if site.as_bytes() != b"same-origin" {
            return false;
        }
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).or_else(|| uri.authority().map(|a| a.as_str()));
    let source = headers.get(header::ORIGIN).or_else(|| headers.get(header::REFERER)).and_then(|v| v.to_str().ok());
    let (Some(host), Some(source)) = (host, source) else { return false };
    let Some(rest) = source.strip_prefix("https://").or_else(|| source.strip_prefix("http://")) else { return false };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    authority.eq_ignore_ascii_case(host)
}

/// Whether the browser reached us over TLS: a proxy in front says so with `X-Forwarded-Proto:
/// https` (or `Forwarded: proto=https`). The service itself speaks plain HTTP only.
fn over_tls(headers: &HeaderMap) -> bool {
    let forwarded_proto = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"));
    let forwarded = headers
        .get(header::FORWARDED)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split([';', ',']).any(|kv| kv.trim().eq_ignore_ascii_case("proto=https")));
    forwarded_proto || forwarded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next(Some("/ui/tickets/a?b=c")), "/ui/tickets/a?b=c");
        for bad in ["//evil.example", "https://evil.example", "/\\evil", "/api/v1/x", "javascript:alert(1)"] {
            assert_eq!(safe_next(Some(bad)), "/ui/tickets", "{bad}");
        }
        assert_eq!(encode_next("/ui/a?b=c&d"), "%2Fui%2Fa%3Fb%3Dc%26d");
    }

    #[test]
    fn origins() {
        let uri: Uri = "/ui/sign-in".parse().unwrap();
        let h = |pairs: &[(&'static str, &'static str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(*k, v.parse().unwrap());
            }
            m
        };
        assert!(same_origin(&uri, &h(&[("host", "127.0.0.1:8080"), ("origin", "http://127.0.0.1:8080")])));
        assert!(!same_origin(&uri, &h(&[("host", "127.0.0.1:8080"), ("origin", "http://evil:8080")])));
        assert!(!same_origin(&uri, &h(&[("host", "127.0.0.1:8080")])));
        assert!(!same_origin(&uri, &h(&[("host", "a"), ("origin", "http://a"), ("sec-fetch-site", "cross-site")])));
        assert!(same_origin(&uri, &h(&[("host", "a"), ("referer", "https://a/ui/ledger")])));
        assert!(!same_origin(&uri, &h(&[("host", "a"), ("origin", "null")])));
    }
}
