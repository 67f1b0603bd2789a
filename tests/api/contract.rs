//! docs/API.md and the served OpenAPI document name the same endpoints.

use std::collections::BTreeMap;

use crate::helpers::spawn_app;

/// Served and documented, but not described by the OpenAPI document (it does not list itself).
const SERVED_OUTSIDE_OPENAPI: &[&str] = &["GET /openapi.json"];

/// The heading of the section whose endpoints are still being built.
const BEING_BUILT: &str = "## Proofs an outside auditor can check";

/// An endpoint as `METHOD /path`, with path parameters written `{}` so that a parameter's name
/// (`{id}` in one, `{command_id}` in the other) is no disagreement; the value is the spelling found.
type Endpoints = BTreeMap<String, String>;

fn key(method: &str, path: &str) -> String {
    let mut out = format!("{} ", method.to_ascii_uppercase());
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push_str("{}");
            }
            '}' => in_param = false,
            _ if in_param => {}
            c => out.push(c),
        }
    }
    out
}

/// Every `` `METHOD /path` `` in the first cell of a table row, split into those of the section
/// being built and all others. A query string (`?seq=N`) is not part of the path.
fn documented(markdown: &str) -> (Endpoints, Endpoints) {
    let (mut built, mut being_built) = (Endpoints::new(), Endpoints::new());
    let mut in_being_built = false;
    for line in markdown.lines() {
        if line.starts_with("## ") {
            in_being_built = line.starts_with(BEING_BUILT);
            continue;
        }
        let Some(first_cell) = line.strip_prefix('|').and_then(|rest| rest.split('|').next()) else { continue };
        for code in first_cell.split('`').skip(1).step_by(2) {
            let Some((method, target)) = code.split_once(' ') else { continue };
            if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method) || !target.starts_with('/') {
                continue;
            }
            let path = target.split('?').next().unwrap_or(target);
            let section = if in_being_built { &mut being_built } else { &mut built };
            section.insert(key(method, path), format!("{method} {path}"));
        }
    }
    (built, being_built)
}

fn missing<'a>(from: &'a Endpoints, isin: &Endpoints) -> Vec<&'a str> {
    from.iter().filter(|(k, _)| !isin.contains_key(*k)).map(|(_, v)| v.as_str()).collect()
}

/// Exact for every endpoint outside the section being built: documented means served and
/// described, and everything described is documented. The section being built (the verifiable
/// log) names endpoints another branch is adding: those the OpenAPI document lacks are not an
/// error yet, but once served, each must be documented (and the other direction holds for them
/// as for all).
#[tokio::test]
async fn docs_api_md_names_exactly_the_endpoints_the_openapi_document_describes() {
    let markdown = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/API.md")).expect("docs/API.md");
    let (built, being_built) = documented(&markdown);
    assert!(built.contains_key("POST /webhooks") && built.len() >= 10, "the tables were not read: {built:?}");

    let app = spawn_app().await;
    let doc = app.get_json("/openapi.json").await;
    let mut described = Endpoints::new();
    for (path, operations) in doc["paths"].as_object().expect("paths") {
        for method in operations.as_object().expect("operations").keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                described.insert(key(method, path), format!("{} {path}", method.to_uppercase()));
            }
        }
    }

    let mut served = described.clone();
    for e in SERVED_OUTSIDE_OPENAPI {
        let (method, path) = e.split_once(' ').unwrap();
        assert!(
            !described.contains_key(&key(method, path)),
            "{e} is described now: drop it from SERVED_OUTSIDE_OPENAPI"
        );
        assert!(built.contains_key(&key(method, path)), "{e} is served but not in docs/API.md");
        assert_eq!(app.get(path, None).await.status(), 200, "{e} is served");
        served.insert(key(method, path), e.to_string());
    }

    let undocumented = {
        let mut all = built.clone();
        all.extend(being_built.clone());
        missing(&described, &all).into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    assert!(undocumented.is_empty(), "served but not in docs/API.md's tables: {undocumented:?}");
    let unserved = missing(&built, &served);
    assert!(unserved.is_empty(), "in docs/API.md but not in GET /openapi.json: {unserved:?}");
    // The section being built, for the record: what is still to come.
    let to_come = missing(&being_built, &described);
    eprintln!("docs/API.md, {BEING_BUILT:?}: not served yet: {to_come:?}");
}

#[test]
fn reads_endpoints_from_table_rows_only() {
    let md = "\
# t
`GET /not/in/a/table`
| endpoint | what |
|---|---|
| `GET /a/{name}/b` | see `GET /in/second/cell` |
| `POST /c`, `GET /d?x=1` | two in one cell |
## Proofs an outside auditor can check (x)
| `GET /e/{id}/f?seq=N` | |
## Later
| `GET /g` | |
";
    let (built, being_built) = documented(md);
    assert_eq!(built.values().collect::<Vec<_>>(), ["GET /a/{name}/b", "GET /d", "GET /g", "POST /c"]);
    assert_eq!(being_built.values().collect::<Vec<_>>(), ["GET /e/{id}/f"]);
    assert!(built.contains_key("GET /a/{}/b"));
}
