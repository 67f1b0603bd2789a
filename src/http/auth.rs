//! Who may send and who may read: Standard Webhooks signatures, bearer tokens, tenant-bound API
//! tokens, and the web page's signed session cookies (which stand for one of those tokens).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};
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
    Tokens(TokenSet),
    Open,
}

/// The configured tokens (as digests, with their tenants) and the key that signs sessions.
pub struct TokenSet {
    entries: Vec<(TokenDigest, Option<String>)>,
    session_key: [u8; 32],
}

/// The session cookie's name. Not `__Host-`: that prefix needs `Secure`, and a page served over
/// plain HTTP on a laptop must still work.
pub const SESSION_COOKIE: &str = "ta_session";

/// How long a session lasts after sign-in.
pub const SESSION_SECS: i64 = 12 * 3600;

impl ApiAuth {
    pub fn from_settings(tokens: Option<&Secret>) -> Result<Self, AuthConfigError> {
        let Some(tokens) = tokens.filter(|t| !t.expose_secret().trim().is_empty()) else { return Ok(ApiAuth::Open) };
        let entries: Vec<(TokenDigest, Option<String>)> = tokens
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
        let session_key = session_key(&entries);
        Ok(ApiAuth::Tokens(TokenSet { entries, session_key }))
    }

    pub fn is_open(&self) -> bool {
        matches!(self, ApiAuth::Open)
    }

    /// Who a request acts as, for the record of an admin action: `api-token:` and the first 12
    /// hex digits of the bearer token's SHA-256 (`printf %s TOKEN | sha256sum` tells which token;
    /// the token itself is never recorded), or `api (open)` without API_TOKENS.
    pub fn actor(&self, headers: &HeaderMap) -> String {
        match (self, bearer(headers)) {
            (ApiAuth::Tokens(_), Some(token)) => {
                format!("api-token:{}", &hex::encode(TokenDigest::of(token).0)[..12])
            }
            _ => "api (open)".to_owned(),
        }
    }

    /// The reader of a request by its bearer token alone.
    pub fn scope(&self, headers: &HeaderMap) -> Result<Scope, ApiError> {
        let ApiAuth::Tokens(set) = self else { return Ok(Scope::All) };
        let presented = bearer(headers).ok_or(ApiError::Unauthorized("missing Authorization: Bearer token"))?;
        set.scope_of(presented).ok_or(ApiError::Unauthorized("invalid bearer token"))
    }

    /// The reader of a request: its bearer token when it has one; else, for GET and HEAD only,
    /// the web page's session cookie. A state-changing request never rides on the cookie, so a
    /// cookie cannot be turned against an API endpoint by another site (the page's own forms
    /// check their origin and a form token, then call `session_scope`).
    pub fn reader(&self, parts: &Parts) -> Result<Scope, ApiError> {
        let ApiAuth::Tokens(set) = self else { return Ok(Scope::All) };
        let safe = parts.method == Method::GET || parts.method == Method::HEAD;
        if bearer(&parts.headers).is_none() && safe {
            if let Some(cookie) = session_cookie(&parts.headers) {
                return set
                    .session(cookie, now_unix())
                    .ok_or(ApiError::Unauthorized("the session has expired or is not valid: sign in again"));
            }
        }
        self.scope(&parts.headers)
    }

    /// The reader a session cookie stands for (`None`: no valid session). Open mode has no
    /// sessions: everyone reads everything.
    pub fn session_scope(&self, headers: &HeaderMap) -> Option<Scope> {
        match self {
            ApiAuth::Open => Some(Scope::All),
            ApiAuth::Tokens(set) => set.session(session_cookie(headers)?, now_unix()),
        }
    }

    /// Signs in with a token: the scope it gives and the cookie value that stands for it, valid
    /// for SESSION_SECS. `None` for a token that is not configured (or in open mode).
    pub fn sign_in(&self, token: &str) -> Option<(Scope, String)> {
        let ApiAuth::Tokens(set) = self else { return None };
        let scope = set.scope_of(token.trim())?;
        Some((scope, set.issue(&TokenDigest::of(token.trim()), now_unix() + SESSION_SECS)))
    }

    /// A value bound to the session (and to `purpose`) that a form carries back, so that a
    /// state-changing request proves it came from a page this session was shown. In open mode,
    /// bound to a fixed key: the origin check is then what stands against other sites.
    pub fn form_token(&self, headers: &HeaderMap, purpose: &str) -> String {
        let (key, cookie) = match self {
            ApiAuth::Open => (&[0u8; 32], ""),
            ApiAuth::Tokens(set) => (&set.session_key, session_cookie(headers).unwrap_or("")),
        };
        B64URL.encode(mac(key, &[b"form\0", purpose.as_bytes(), b"\0", cookie.as_bytes()]))
    }

    /// Whether a form's token is the one `form_token` gives for this request (constant time).
    pub fn check_form_token(&self, headers: &HeaderMap, purpose: &str, presented: &str) -> bool {
        self.form_token(headers, purpose).as_bytes().ct_eq(presented.as_bytes()).into()
    }
}

impl TokenSet {
    /// The scope a token gives, looking at every entry so the time does not say which matched.
    fn scope_of(&self, presented: &str) -> Option<Scope> {
        self.scope_of_digest(|known| bool::from(known.0.ct_eq(&TokenDigest::of(presented).0)))
    }

    fn scope_of_digest(&self, matches: impl Fn(&TokenDigest) -> bool) -> Option<Scope> {
        let mut found: Option<&Option<String>> = None;
        for (known, tenant) in &self.entries {
            if matches(known) {
                found = Some(tenant);
            }
        }
        found.map(|t| t.clone().map_or(Scope::All, Scope::Tenant))
    }

    /// Which token a session stands for, without saying it: a MAC of its digest under the key.
    fn fingerprint(&self, digest: &TokenDigest) -> String {
        hex::encode(&mac(&self.session_key, &[b"token\0", &digest.0])[..16])
    }

    /// `v1.<expiry>.<fingerprint>.<mac>`.
    fn issue(&self, digest: &TokenDigest, expires: i64) -> String {
        let body = format!("v1.{expires}.{}", self.fingerprint(digest));
        let tag = B64URL.encode(mac(&self.session_key, &[b"session\0", body.as_bytes()]));
        format!("{body}.{tag}")
    }

    /// The scope of a session cookie, if it is ours, unexpired, and for a token still configured.
    fn session(&self, cookie: &str, now: i64) -> Option<Scope> {
        let (body, tag) = cookie.rsplit_once('.')?;
        let expected = B64URL.encode(mac(&self.session_key, &[b"session\0", body.as_bytes()]));
        if !bool::from(expected.as_bytes().ct_eq(tag.as_bytes())) {
            return None;
        }
        let mut parts = body.split('.');
        let (Some("v1"), Some(expires), Some(fp), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        if expires.parse::<i64>().ok()? <= now {
            return None;
        }
        self.scope_of_digest(|known| bool::from(self.fingerprint(known).as_bytes().ct_eq(fp.as_bytes())))
    }
}

/// The session signing key: HMAC-SHA256 over a label and the whole token set (digests and
/// tenants, in a fixed order). Every instance with the same API_TOKENS derives the same key, so
/// sessions work across instances with no new setting; changing the tokens ends every session;
/// and it takes every token's digest, the admin's included, so a tenant token's holder cannot
/// compute it.
fn session_key(entries: &[(TokenDigest, Option<String>)]) -> [u8; 32] {
    let mut sorted: Vec<&(TokenDigest, Option<String>)> = entries.iter().collect();
    sorted.sort_by(|a, b| (a.0 .0, &a.1).cmp(&(b.0 .0, &b.1)));
    let mut m = Hmac::<Sha256>::new_from_slice(b"ticket-audit web session key v1").expect("any key length");
    for (digest, tenant) in sorted {
        m.update(&digest.0);
        match tenant {
            None => m.update(&[0]),
            Some(t) => {
                m.update(&[1]);
                m.update(&(t.len() as u64).to_be_bytes());
                m.update(t.as_bytes());
            }
        }
    }
    m.finalize().into_bytes().into()
}

fn mac(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The session cookie's value from the request's `Cookie` headers, if any.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim_matches('"'))
}

/// The reader of an API request, as an extractor: every read handler takes one. A bearer token,
/// or (GET and HEAD) the web page's session cookie.
pub struct Reader(pub Scope);

impl FromRequestParts<AppState> for Reader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        state.api_auth.reader(parts).map(Reader)
    }
}

/// An admin reader (a token bound to no tenant), for operator-only endpoints.
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match state.api_auth.reader(parts)? {
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

    #[test]
    fn sessions_stand_for_their_token_and_nothing_else() {
        let auth = ApiAuth::from_settings(Some(&Secret::from("admin, t1=tenant-a"))).unwrap();
        let ApiAuth::Tokens(set) = &auth else { panic!("tokens") };
        let (scope, cookie) = auth.sign_in("t1").unwrap();
        assert_eq!(scope, Scope::Tenant("tenant-a".into()));
        assert_eq!(set.session(&cookie, now_unix()), Some(Scope::Tenant("tenant-a".into())));
        let (_, admin) = auth.sign_in(" admin ").unwrap();
        assert_eq!(set.session(&admin, now_unix()), Some(Scope::All));
        assert!(auth.sign_in("nope").is_none());
        // Expired, tampered with, or from another token set: refused.
        assert_eq!(set.session(&cookie, now_unix() + SESSION_SECS + 1), None);
        let forged = cookie.replacen(&cookie[3..13], "9999999999", 1);
        assert_eq!(set.session(&forged, now_unix()), None);
        let rotated = ApiAuth::from_settings(Some(&Secret::from("admin2, t1=tenant-a"))).unwrap();
        let ApiAuth::Tokens(rotated) = &rotated else { panic!("tokens") };
        assert_eq!(rotated.session(&cookie, now_unix()), None, "rotating tokens ends sessions");
        // A tenant token's holder, knowing only its own token, cannot derive the key.
        let alone = ApiAuth::from_settings(Some(&Secret::from("t1=tenant-a"))).unwrap();
        let ApiAuth::Tokens(alone) = &alone else { panic!("tokens") };
        let guess = alone.issue(&TokenDigest::of("admin"), now_unix() + 60);
        assert_eq!(set.session(&guess, now_unix()), None);
    }

    #[test]
    fn the_cookie_reads_only_on_safe_methods() {
        let auth = ApiAuth::from_settings(Some(&Secret::from("admin"))).unwrap();
        let (_, cookie) = auth.sign_in("admin").unwrap();
        let parts = |method: &str, cookie: &str| {
            let req = axum::http::Request::builder()
                .method(method)
                .header("cookie", format!("other=1; {SESSION_COOKIE}={cookie}"))
                .body(())
                .unwrap();
            req.into_parts().0
        };
        assert_eq!(auth.reader(&parts("GET", &cookie)).unwrap(), Scope::All);
        assert!(auth.reader(&parts("POST", &cookie)).is_err());
        assert!(auth.reader(&parts("GET", "v1.1.2.3")).is_err());
        let headers = parts("GET", &cookie).headers;
        let t = auth.form_token(&headers, "sign-out");
        assert!(auth.check_form_token(&headers, "sign-out", &t));
        assert!(!auth.check_form_token(&headers, "verify", &t));
        assert!(!auth.check_form_token(&HeaderMap::new(), "sign-out", &t));
    }
}
