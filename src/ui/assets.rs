//! The page's stylesheet and script, embedded in the binary and served under a name that carries
//! their content hash, so a browser may keep them forever and a new build is fetched at once.

use std::sync::OnceLock;

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::http::Path;

struct Asset {
    stem: &'static str,
    ext: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const CSS: Asset = Asset {
    stem: "app",
    ext: "css",
    content_type: "text/css; charset=utf-8",
    bytes: include_bytes!("../../assets/app.css"),
};
const JS: Asset = Asset {
    stem: "app",
    ext: "js",
    content_type: "text/javascript; charset=utf-8",
    bytes: include_bytes!("../../assets/app.js"),
};

/// `app.<12 hex digits of SHA-256>.css`, and the same for the script, computed once.
fn names() -> &'static [(String, &'static Asset); 2] {
    static NAMES: OnceLock<[(String, &'static Asset); 2]> = OnceLock::new();
    NAMES.get_or_init(|| {
        let name = |a: &'static Asset| {
            let hash = hex::encode(&Sha256::digest(a.bytes)[..6]);
            (format!("{}.{hash}.{}", a.stem, a.ext), a)
        };
        [name(&CSS), name(&JS)]
    })
}

pub fn css_url() -> String {
    format!("/ui/assets/{}", names()[0].0)
}

pub fn js_url() -> String {
    format!("/ui/assets/{}", names()[1].0)
}

pub async fn serve(Path(file): Path<String>, headers: HeaderMap) -> Response {
    let Some((name, asset)) = names().iter().find(|(n, _)| *n == file) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let etag = format!("\"{name}\"");
    let cache =
        [(header::CACHE_CONTROL, "public, max-age=31536000, immutable".to_owned()), (header::ETAG, etag.clone())];
    if headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
        return (StatusCode::NOT_MODIFIED, cache).into_response();
    }
    (cache, [(header::CONTENT_TYPE, asset.content_type)], asset.bytes).into_response()
}
