//! Who may send and who may read: Standard Webhooks signatures, bearer tokens, tenant-bound API tokens.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::AppState;
use crate::config::Secret;
use crate::store::Scope;

#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error("WEBHOOK_SECRET entries must look like whsec_<base64>; entry {0} does not")]
    BadSecret(usize),
    #[error("API_TOKENS entries must be `token` or `token=tenant_id`; entry {0} is empty")]
    BadToken(usize),
}

/// How senders of webhooks are authenticated.
pub enum WebhookAuth {
    Signatures { keys: Vec<Vec<u8>>, tolerance_secs: i64 },
    Token(TokenDigest),
    Open,
}

impl WebhookAuth {
    pub fn from_settings(
        secrets: Option<&Secret>,
        token: Option<&Secret>,
        tolerance_secs: u64,
    ) -> Result<Self, AuthConfigError> {
        if let Some(secrets) = secrets.filter(|s| !s.expose_secret().trim().is_empty()) {
            let keys = secrets
                .expose_secret()
                .split_whitespace()
                .enumerate()
                .map(|(i, s)| {
                    let b64 = s.strip_prefix("whsec_").unwrap_or(s);
                    B64.decode(b64).ok().filter(|k| !k.is_empty()).ok_or(AuthConfigError::BadSecret(i + 1))
                })
                .collect::<Result<_, _>>()?;
            return Ok(WebhookAuth::Signatures { keys, tolerance_secs: tolerance_secs as i64 });
        }
        if let Some(token) = token.filter(|t| !t.expose_secret().is_empty()) {
            return Ok(WebhookAuth::Token(TokenDigest::of(token.expose_secret())));
        }
        Ok(WebhookAuth::Open)
    }

    pub fn describe(&self) -> &'static str {
        match self {
            WebhookAuth::Signatures { .. } => "Standard Webhooks signatures",
            WebhookAuth::Token(_) => "bearer token",
            WebhookAuth::Open => "none (open)",
        }
    }

    /// Checks what can be checked before the body is read.
    pub fn check_headers(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        match self {
            WebhookAuth::Token(expected) => match bearer(headers) {
                Some(t) if expected.matches(t) => Ok(()),
                Some(_) => Err(ApiError::Unauthorized("invalid bearer token")),
                None => Err(ApiError::Unauthorized("missing Authorization: Bearer token")),
            },
            _ => Ok(()),
        }
    }

    /// Checks a signature over the body, when signatures are configured.
    pub fn check_body(&self, headers: &HeaderMap, body: &[u8], now_unix: i64) -> Result<(), ApiError> {
        let WebhookAuth::Signatures { keys, tolerance_secs } = self else { return Ok(()) };
        let get = |a: &str, b: &str| headers.get(a).or_else(|| headers.get(b)).and_then(|v| v.to_str().ok());
        let (Some(id), Some(ts), Some(sigs)) = (
            get("webhook-id", "svix-id"),
            get("webhook-timestamp", "svix-timestamp"),
            get("webhook-signature", "svix-signature"),
        ) else {
            return Err(ApiError::Unauthorized("missing webhook-id, webhook-timestamp or webhook-signature header"));
        };
        let ts_num = unix_seconds(ts)
            .ok_or(ApiError::Unauthorized("webhook-timestamp must be integer seconds since 1970, digits only"))?;
        if now_unix.saturating_sub(ts_num) > *tolerance_secs {
            return Err(ApiError::Unauthorized("webhook-timestamp is too old"));
        }
        if ts_num.saturating_sub(now_unix) > *tolerance_secs {
            return Err(ApiError::Unauthorized("webhook-timestamp is in the future"));
        }
        verify_signature(keys, id, ts, body, sigs)
            .then_some(())
            .ok_or(ApiError::Unauthorized("no webhook-signature matches"))
    }
}

/// A `webhook-timestamp` (or `svix-timestamp`) that is present must be in the Standard Webhooks
/// form whatever the authentication: with signatures a malformed one fails the signature check
/// (401); otherwise it is a bad request (400), as the OpenAPI document's pattern says, rather than
/// stored as if it meant something.
pub fn check_timestamp_form(auth: &WebhookAuth, headers: &HeaderMap) -> Result<(), ApiError> {
    if matches!(auth, WebhookAuth::Signatures { .. }) {
        return Ok(());
    }
    for name in ["webhook-timestamp", "svix-timestamp"] {
        if let Some(v) = headers.get(name) {
            if v.to_str().ok().and_then(unix_seconds).is_none() {
                return Err(ApiError::BadRequest(format!("{name} must be integer seconds since 1970, digits only")));
            }
        }
    }
    Ok(())
}

/// Most digits of a `webhook-timestamp`: seconds up to the year 9999 (253402300799).
const MAX_TIMESTAMP_DIGITS: usize = 12;

/// A `webhook-timestamp` in the Standard Webhooks form: integer seconds, ASCII digits with no
/// sign, no space and no leading zero (`0` itself aside), so that one instant has one spelling
/// and `000<now>` or `+<now>` is not a second signed form of it.
fn unix_seconds(s: &str) -> Option<i64> {
    let canonical = (1..=MAX_TIMESTAMP_DIGITS).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_digit())
        && (s == "0" || !s.starts_with('0'));
    canonical.then(|| s.parse().ok()).flatten()
}

/// Standard Webhooks: HMAC-SHA256 over `id.timestamp.body`; any `v1,<base64>` entry may match.
/// `verify_slice` compares in constant time and refuses a signature of the wrong length.
pub fn verify_signature(keys: &[Vec<u8>], id: &str, ts: &str, body: &[u8], signatures: &str) -> bool {
    let candidates: Vec<Vec<u8>> = signatures
        .split_whitespace()
        .filter_map(|s| s.strip_prefix("v1,"))
        .filter_map(|b64| B64.decode(b64).ok())
        .collect();
    let mut matched = false;
    for key in keys {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(ts.as_bytes());
        mac.update(b".");
        mac.update(body);
        for sig in &candidates {
            // No early exit: every candidate is compared, so timing does not tell which one failed.
            matched |= mac.clone().verify_slice(sig).is_ok();
        }
    }
    matched
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// A token kept only as its SHA-256, compared in constant time whatever the lengths.
#[derive(Clone)]
pub struct TokenDigest([u8; 32]);

impl TokenDigest {
    pub fn of(token: &str) -> Self {
        TokenDigest(Sha256::digest(token.as_bytes()).into())
    }
    pub fn matches(&self, presented: &str) -> bool {
        Self::of(presented).0.ct_eq(&self.0).into()
    }
}

/// `API_TOKENS`: who may read, and which tenant each token is bound to.
pub enum ApiAuth {
    Tokens(Vec<(TokenDigest, Option<String>)>),
    Open,
}

impl ApiAuth {
    pub fn from_settings(tokens: Option<&Secret>) -> Result<Self, AuthConfigError> {
        let Some(tokens) = tokens.filter(|t| !t.expose_secret().trim().is_empty()) else { return Ok(ApiAuth::Open) };
        let entries = tokens
            .expose_secret()
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|e| !e.is_empty())
            .enumerate()
            .map(|(i, e)| {
                let (token, tenant) = match e.split_once('=') {
                    Some((t, tenant)) => (t, Some(tenant.to_owned()).filter(|s| !s.is_empty())),
                    None => (e, None),
                };
                if token.is_empty() {
                    return Err(AuthConfigError::BadToken(i + 1));
                }
                Ok((TokenDigest::of(token), tenant))
            })
            .collect::<Result<_, _>>()?;
        Ok(ApiAuth::Tokens(entries))
    }

    pub fn is_open(&self) -> bool {
        matches!(self, ApiAuth::Open)
    }

    pub fn scope(&self, headers: &HeaderMap) -> Result<Scope, ApiError> {
        let ApiAuth::Tokens(entries) = self else { return Ok(Scope::All) };
        let presented = bearer(headers).ok_or(ApiError::Unauthorized("missing Authorization: Bearer token"))?;
        let digest = TokenDigest::of(presented);
        let mut found: Option<&Option<String>> = None;
        for (known, tenant) in entries {
            // Look at every entry, so the time taken does not depend on which one matched.
            if bool::from(known.0.ct_eq(&digest.0)) {
                found = Some(tenant);
            }
        }
        match found {
            Some(Some(tenant)) => Ok(Scope::Tenant(tenant.clone())),
            Some(None) => Ok(Scope::All),
            None => Err(ApiError::Unauthorized("invalid bearer token")),
        }
    }
}

/// The reader of an API request, as an extractor: every read handler takes one.
pub struct Reader(pub Scope);

impl FromRequestParts<AppState> for Reader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        state.api_auth.scope(&parts.headers).map(Reader)
    }
}

/// An admin reader (a token bound to no tenant), for operator-only endpoints.
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match state.api_auth.scope(&parts.headers)? {
            Scope::All => Ok(Admin),
            // As if it did not exist, like everything else a tenant may not see.
            Scope::Tenant(_) => Err(ApiError::NotFound),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vectors from the Standard Webhooks specification (shared/fixtures/README.md).
    #[test]
    fn standard_webhooks_vectors() {
        let cases = [
            (
                "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                "1614265330",
                r#"{"test": 2432232314}"#,
                "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            ),
            (
                "C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                "1649367553",
                r#"{"email":"test@example.com","username":"test_user"}"#,
                "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
            ),
        ];
        for (secret, id, ts, body, sig) in cases {
            let keys = vec![B64.decode(secret).unwrap()];
            assert!(verify_signature(&keys, id, ts, body.as_bytes(), sig));
            assert!(verify_signature(&keys, id, ts, body.as_bytes(), &format!("v1,bm90IGl0 {sig}")));
            assert!(!verify_signature(&keys, id, ts, &[body.as_bytes(), b" "].concat(), sig));
            assert!(!verify_signature(&keys, id, ts, body.as_bytes(), &sig[..sig.len() - 4]));
            assert!(!verify_signature(&keys, id, ts, body.as_bytes(), "v1,"));
            assert!(!verify_signature(&keys, id, ts, body.as_bytes(), &sig.replace("v1,", "v2,")));
        }
    }

    proptest::proptest! {
        /// Every string: accepted exactly when it is the decimal spelling of a number of seconds
        /// (no sign, no leading zero, at most 12 digits), and then read as that number.
        #[test]
        fn timestamps_are_plain_integer_seconds(s in "[-+ 0-9a-f.eE]{0,14}") {
            let plain = s.len() <= MAX_TIMESTAMP_DIGITS && s.parse::<u64>().is_ok_and(|n| n.to_string() == s);
            proptest::prop_assert_eq!(unix_seconds(&s).is_some(), plain, "{:?}", s);
            if let Some(n) = unix_seconds(&s) {
                proptest::prop_assert_eq!(n.to_string(), s);
            }
        }

        /// Every number of seconds up to the year 9999 is accepted in its plain spelling and in
        /// no other: zero-padded, signed, spaced.
        #[test]
        fn each_instant_has_one_spelling(n in 0i64..=253_402_300_799) {
            proptest::prop_assert_eq!(unix_seconds(&n.to_string()), Some(n));
            for other in [format!("0{n}"), format!("000{n}"), format!("+{n}"), format!("-{n}"), format!(" {n}"), format!("{n} "), format!("{n}.0")] {
                proptest::prop_assert_eq!(unix_seconds(&other), None, "{:?}", other);
            }
        }
    }

    #[test]
    fn api_tokens_bind_tenants() {
        let auth = ApiAuth::from_settings(Some(&Secret::from("admin, t1=tenant-a"))).unwrap();
        let headers = |t: &str| {
            let mut h = HeaderMap::new();
            h.insert("authorization", format!("Bearer {t}").parse().unwrap());
            h
        };
        assert_eq!(auth.scope(&headers("admin")).unwrap(), Scope::All);
        assert_eq!(auth.scope(&headers("t1")).unwrap(), Scope::Tenant("tenant-a".into()));
        assert!(auth.scope(&headers("t")).is_err());
        assert!(auth.scope(&HeaderMap::new()).is_err());
    }
}
