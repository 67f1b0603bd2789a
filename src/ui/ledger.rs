//! The ledger for admins: its head, the latest signed checkpoint, and a verify button.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};

use super::session::{forbidden, form_token_ok, same_origin};
use super::{html_response, layout, time, UiError, UiReader};
use crate::http::error::ApiError;
use crate::http::AppState;
use crate::store::{ledger, tree, Scope};

/// Admins only, as the API's ledger endpoints: a tenant token sees "not found".
fn admin(reader: &UiReader) -> Result<(), UiError> {
    match reader.scope {
        Scope::All => Ok(()),
        Scope::Tenant(_) => Err(ApiError::NotFound.into()),
    }
}

pub async fn page_of(
    app: &AppState,
    reader: &UiReader,
    headers: &HeaderMap,
    result: Option<Markup>,
) -> Result<Response, UiError> {
    // The primary's head and checkpoint, as the API gives them: a head to record must be the newest.
    let mut conn = app.pool.acquire().await.map_err(ApiError::from)?;
    let head = ledger::head(&mut conn).await?;
    let checkpoint = tree::latest_checkpoint(&mut conn).await?;
    drop(conn);
    let token = app.api_auth.form_token(headers, "verify");
    let body = html! {
        h1 { "Ledger" }
        h2 { "Head" }
        dl.fields {
            dt { "Deliveries" } dd { (head.seq) }
            dt { "Head hash" } dd { code { (hex::encode(&head.hash)) } }
            dt { "Last received" } dd { @if let Some(at) = head.at { (time(at)) } @else { "nothing yet" } }
        }
        p.hint { "Record the head somewhere else; " code { "ticket-audit verify --expect-head SEQ:HASH" } " later proves the chain still passes through it." }
        h2 { "Latest signed checkpoint" }
        @if let Some(c) = &checkpoint {
            dl.fields {
                dt { "Tree size" } dd { (c.tree_size) }
                dt { "Root hash" } dd { code { (hex::encode(&c.root_hash)) } }
                dt { "Signed" } dd { (time(c.signed_at)) }
            }
            pre.out { (super::text::visible(&c.note)) }
        } @else {
            p.empty { "No checkpoint is signed yet: the service signs one shortly after the first delivery." }
        }
        h2 { "Verify" }
        p { "Recomputes the whole chain and the counts, as " code { "ticket-audit verify" } " does. It reads every delivery: on a large ledger it takes a while." }
        form method="post" action="/ui/ledger/verify" {
            input type="hidden" name="form_token" value=(token);
            button.primary type="submit" { "Verify the ledger now" }
        }
        @if let Some(r) = result { (r) }
    };
    Ok(html_response(StatusCode::OK, layout("Ledger", &reader.frame, "ledger", None, body)))
}

pub async fn show(State(app): State<AppState>, reader: UiReader, headers: HeaderMap) -> Result<Response, UiError> {
    admin(&reader)?;
    page_of(&app, &reader, &headers, None).await
}

pub async fn verify(
    State(app): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, UiError> {
    if !same_origin(&uri, &headers) || !form_token_ok(&app, &headers, "verify", &body) {
        return Ok(forbidden());
    }
    // The session, not the cookie-less API rule for POST: the form token above already ties
    // this request to a page this session was shown.
    let Some(scope) = app.api_auth.session_scope(&headers) else {
        return Ok(UiError::SignIn { next: "/ui/ledger".into() }.into_response());
    };
    let sign_out_token = (!app.api_auth.is_open()).then(|| app.api_auth.form_token(&headers, "sign-out"));
    let reader = UiReader { scope: scope.clone(), frame: super::Frame { scope, sign_out_token } };
    admin(&reader)?;
    // A scan of the whole record: the replica's work, when there is one (as the API's verify).
    let mut conn = app.read_pool().acquire().await.map_err(ApiError::from)?;
    let report = ledger::verify(&mut conn, None).await?;
    drop(conn);
    let result = html! {
        section.verify role="status" {
            @if report.ok {
                p { span.badge.ok { "OK" } " The chain verifies: " (report.deliveries) " deliveries, " (report.commands) " commands, head "
                    code { (hex::encode(&report.head.hash)) } "." }
            } @else {
                p { span.badge.bad { "BROKEN" } " The chain does not verify." }
                @if let Some(b) = &report.first_break {
                    pre.out { (super::text::visible(&serde_json::to_string_pretty(b).unwrap_or_default())) }
                }
                p { "Stop writing to this database, keep a copy, and see docs/ledger.md for what each kind of break means." }
            }
        }
    };
    page_of(&app, &reader, &headers, Some(result)).await
}
