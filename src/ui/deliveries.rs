//! One delivery: its metadata, its body indented for reading, and a link to the exact bytes.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;

use super::tickets::{opt, ticket_href};
use super::{html_response, layout, text, time, UiError, UiReader};
use crate::http::error::ApiError;
use crate::http::{AppState, Path};
use crate::store::read;

pub async fn one(State(app): State<AppState>, reader: UiReader, Path(id): Path<i64>) -> Result<Response, UiError> {
    let d = read::get_delivery(app.read_pool(), &reader.scope, id).await?.ok_or(ApiError::NotFound)?;
    let body = read::delivery_body(app.read_pool(), &reader.scope, id).await?.ok_or(ApiError::NotFound)?;
    let body = String::from_utf8_lossy(&body);
    let redacted = d.redaction.is_some();
    let raw = format!("/api/v1/deliveries/{id}/raw");
    let headers = serde_json::to_string_pretty(&d.headers.0).unwrap_or_default();
    let non_2xx = d.status_code.is_some_and(|s| !(200..300).contains(&s));
    let markup = html! {
        nav.crumbs aria-label="Breadcrumb" {
            a href="/ui/tickets" { "Tickets" } " / "
            @if let Some(t) = &d.ticket_name { a href=(ticket_href(&t.0)) { (text::visible(&t.0)) } " / " }
        }
        h1 { "Delivery " (d.seq) }
        dl.fields {
            dt { "Received" } dd { (time(d.received_at)) }
            dt { "Recorded" } dd { (time(d.recorded_at)) }
            dt { "Action" } dd { (opt(&d.action)) }
            dt { "Status code" } dd {
                @if let Some(s) = d.status_code { (s) } @if non_2xx { " " span.badge.bad { "non-2xx" } }
            }
            dt { "Ticket" } dd { @if let Some(t) = &d.ticket_name { a href=(ticket_href(&t.0)) { (text::visible(&t.0)) } } }
            dt { "Tenant" } dd { (opt(&d.tenant_id)) }
            dt { "Key" } dd { code { (text::visible(&d.dedup_key.0)) } " (" (d.key_source) ")" }
            dt { "Size" } dd { (d.size) " bytes" }
            dt { "Body SHA-256" } dd { code { (hex::encode(&d.body_sha256)) } }
            dt { "Ledger hash" } dd { code { (hex::encode(&d.hash)) } }
            @if let Some(e) = &d.normalize_error { dt { "Not normalized" } dd { span.badge.bad { "error" } " " (text::visible(&e.0)) } }
            @if d.unprojected { dt { "Projection" } dd { span.badge.bad { "refused by the database" } " stored, shown as a bare event" } }
            @if let Some(r) = &d.redaction {
                dt { "Redacted" } dd {
                    span.badge { "redacted" } " " (time(r.redacted_at)) " by " (text::visible(&r.actor))
                    ": " (text::visible(&r.reason)) " "
                    a href={"/ui/deliveries/" (r.redaction_seq)} { "(redaction entry " (r.redaction_seq) ")" }
                }
            }
        }
        div.actions {
            a href=(raw) { "The exact bytes received" }
            a href={"/api/v1/deliveries/" (id)} { "As JSON (API)" }
        }
        h2 { "Body" }
        @if redacted {
            p.hint { "Redacted: the body was replaced by a tombstone. Its SHA-256 above, its ledger hash and its leaf in the log remain." }
        } @else {
            p.hint { "Indented for reading; every character as received. The exact bytes are behind the link above." }
            pre.out.json { (text::visible(&text::pretty_json(&body))) }
        }
        h2 { "Headers" }
        pre.out.json { (text::visible(&headers)) }
    };
    Ok(html_response(StatusCode::OK, layout(&format!("Delivery {id}"), &reader.frame, "", None, markup)))
}
