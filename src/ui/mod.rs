//! The web page: server-rendered HTML over the read API's own store functions, at `/ui`.
//!
//! Templates are maud's `html!`: Rust expressions checked by the compiler, every interpolated
//! value escaped unless wrapped in `PreEscaped` (which this module uses only for its own
//! constant markup). Assets are embedded; every answer carries a strict Content-Security-Policy,
//! and the one script is a file of ours (no inline script or style anywhere).

mod assets;
mod commands;
mod deliveries;
mod ledger;
mod session;
mod text;
mod tickets;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup, Render, DOCTYPE};
use tower_http::set_header::SetResponseHeaderLayer;

use crate::http::error::ApiError;
use crate::http::AppState;
use crate::store::Scope;

pub use session::UiReader;

/// No inline script or style, nothing from elsewhere, never in a frame.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
                   font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The page's routes; `/` redirects to `/ui`.
pub fn routes() -> Router<AppState> {
    let pages = Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/tickets") }))
        .route("/ui/", get(|| async { Redirect::to("/ui/tickets") }))
        .route("/ui/sign-in", get(session::form).post(session::sign_in))
        .route("/ui/sign-out", post(session::sign_out))
        .route("/ui/tickets", get(tickets::list))
        .route("/ui/tickets/{name}", get(tickets::one))
        .route("/ui/commands", get(commands::list))
        .route("/ui/commands.csv", get(commands::csv))
        .route("/ui/commands.ndjson", get(commands::ndjson))
        .route("/ui/deliveries/{id}", get(deliveries::one))
        .route("/ui/ledger", get(ledger::show))
        .route("/ui/ledger/verify", post(ledger::verify))
        // Tenant data: no cache keeps a copy (the assets below override this with their own).
        .layer(SetResponseHeaderLayer::if_not_present(header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .route("/ui/assets/{file}", get(assets::serve));
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui") }))
        .merge(pages)
        .layer(SetResponseHeaderLayer::overriding(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)))
        .layer(SetResponseHeaderLayer::overriding(header::REFERRER_POLICY, HeaderValue::from_static("same-origin")))
        .layer(SetResponseHeaderLayer::overriding(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
}

/// What a page's frame needs to know: who reads (for the navigation) and the form token for
/// signing out.
pub struct Frame {
    pub scope: Scope,
    /// None in open mode (no sessions).
    pub sign_out_token: Option<String>,
}

/// Every page's `<head>`: its title, the stylesheet and the one script.
fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · ticket-audit" }
            link rel="stylesheet" href=(assets::css_url());
            script src=(assets::js_url()) defer {}
        }
    }
}

/// A whole page: the frame around `body`. `live` is the stream URL the script follows, if any.
pub fn layout(title: &str, frame: &Frame, current: &str, live: Option<&str>, body: Markup) -> Markup {
    let nav = [
        ("tickets", "/ui/tickets", "Tickets"),
        ("commands", "/ui/commands", "Commands"),
        ("ledger", "/ui/ledger", "Ledger"),
    ];
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body data-stream=[live] {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/ui/tickets" { "ticket-audit" }
                    nav aria-label="Sections" {
                        @for (key, href, label) in nav {
                            @if key == "ledger" && frame.scope != Scope::All {
                            } @else {
                                a href=(href) aria-current=[(key == current).then_some("page")] { (label) }
                            }
                        }
                    }
                    div.who {
                        @match &frame.scope {
                            Scope::All => span { "all tenants" },
                            Scope::Tenant(t) => span { "tenant " code { (text::visible(t)) } },
                        }
                        @if let Some(token) = &frame.sign_out_token {
                            form method="post" action="/ui/sign-out" {
                                input type="hidden" name="form_token" value=(token);
                                button type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main #main { (body) }
                footer { "Times are UTC; hover one for your local time." }
            }
        }
    }
}

/// A bare page (sign-in, errors before a session).
pub fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header.top { a.brand href="/ui/tickets" { "ticket-audit" } }
                main #main { (body) }
            }
        }
    }
}

/// An HTML answer.
pub fn html_response(status: StatusCode, markup: Markup) -> Response {
    (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], markup.into_string()).into_response()
}

/// A time as the page shows it: UTC, with the exact RFC 3339 value for the script's local-time tooltip.
pub fn time(t: time::OffsetDateTime) -> Time {
    Time(t)
}

/// [`time`]'s markup, written straight into the page (a ticket page has a thousand): the digits
/// of `<time datetime="2026-12-01T09:30:00.5Z">2026-12-01 09:30:00 UTC</time>`, the attribute as
/// `domain::timestamp::format` writes it.
pub struct Time(time::OffsetDateTime);

impl Render for Time {
    fn render_to(&self, out: &mut String) {
        let t = self.0.to_offset(time::UtcOffset::UTC);
        if !(0..=9999).contains(&t.year()) {
            // RFC 3339 has no such year: the expanded form, as the record writes it.
            let exact = crate::domain::timestamp::format(self.0);
            let shown = format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            );
            return html! { time datetime=(exact) { (shown) } }.render_to(out);
        }
        let (date, clock) = (t.date(), t.time());
        fn digits(out: &mut String, n: u32, width: u32) {
            for p in (0..width).rev() {
                out.push(char::from(b'0' + (n / 10u32.pow(p) % 10) as u8));
            }
        }
        let day = |out: &mut String| {
            digits(out, date.year() as u32, 4);
            out.push('-');
            digits(out, u32::from(u8::from(date.month())), 2);
            out.push('-');
            digits(out, u32::from(date.day()), 2);
        };
        let hms = |out: &mut String| {
            digits(out, u32::from(clock.hour()), 2);
            out.push(':');
            digits(out, u32::from(clock.minute()), 2);
            out.push(':');
            digits(out, u32::from(clock.second()), 2);
        };
        out.push_str("<time datetime=\"");
        day(out);
        out.push('T');
        hms(out);
        let mut nanos = clock.nanosecond();
        if nanos != 0 {
            // Nine digits, the trailing zeros left out (as the time crate's RFC 3339 writes them).
            let mut width = 9;
            while nanos % 10 == 0 {
                nanos /= 10;
                width -= 1;
            }
            out.push('.');
            digits(out, nanos, width);
        }
        out.push_str("Z\">");
        day(out);
        out.push(' ');
        hms(out);
        out.push_str(" UTC</time>");
    }
}

/// A page's failure, as a page that says what to do.
pub enum UiError {
    /// Not signed in (or the session ended): to the sign-in form, coming back here after.
    SignIn {
        next: String,
    },
    Api(ApiError),
    /// A filter the page could not read, with what to fix.
    BadInput(String),
}

impl From<ApiError> for UiError {
    fn from(e: ApiError) -> Self {
        UiError::Api(e)
    }
}

impl From<sqlx::Error> for UiError {
    fn from(e: sqlx::Error) -> Self {
        UiError::Api(e.into())
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let (status, heading, advice) = match self {
            UiError::SignIn { next } => {
                return Redirect::to(&format!("/ui/sign-in?next={}", session::encode_next(&next))).into_response()
            }
            UiError::BadInput(what) => (StatusCode::BAD_REQUEST, "That filter cannot be read".to_owned(), what),
            UiError::Api(e) => {
                match e {
                    ApiError::NotFound => (
                        StatusCode::NOT_FOUND,
                        "Not found".to_owned(),
                        "There is nothing here, or it belongs to a tenant this session cannot see. Check the link, or go back to the tickets.".to_owned(),
                    ),
                    ApiError::BadRequest(d) => (StatusCode::BAD_REQUEST, "That request cannot be read".to_owned(), d),
                    ApiError::Unavailable(..) => {
                        // Logs the cause, as the API does.
                        drop(e.into_response());
                        (StatusCode::SERVICE_UNAVAILABLE, "The service is unavailable".to_owned(), "The database cannot be reached or the service is busy. Try again in a few seconds.".to_owned())
                    }
                    other => {
                        drop(other.into_response());
                        (StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong".to_owned(), "The server failed to answer; the error is logged. Try again, and tell the operator if it keeps happening.".to_owned())
                    }
                }
            }
        };
        html_response(
            status,
            bare(
                &heading,
                html! {
                    section.error role="alert" {
                        h1 { (heading) }
                        p { (advice) }
                        p { a href="/ui/tickets" { "Back to the tickets" } }
                    }
                },
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use maud::Render;

    #[test]
    fn times_are_written_as_the_record_formats_them() {
        for t in [
            "2026-12-01T09:30:00Z",
            "2026-12-01T09:30:00.5Z",
            "2026-12-01T09:30:00.123456Z",
            "0001-01-01T00:00:00.000000001Z",
            "9999-12-31T23:59:59.999999999Z",
            "2026-12-01T10:30:00.120+01:00",
        ] {
            let t = time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).unwrap();
            let exact = crate::domain::timestamp::format(t);
            let u = t.to_offset(time::UtcOffset::UTC);
            let shown = format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
                u.year(),
                u8::from(u.month()),
                u.day(),
                u.hour(),
                u.minute(),
                u.second()
            );
            let want = maud::html! { time datetime=(exact) { (shown) } }.into_string();
            assert_eq!(super::time(t).render().into_string(), want);
        }
    }
}
