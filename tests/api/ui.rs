//! The web page over HTTP: sign-in and its cookie, tenant rules on every page and download,
//! hostile content rendered as text, the downloads equal to the API's answer, and the headers
//! that keep the page safe. (The same in a real browser: browser.rs.)

use crate::helpers::*;
use ticket_audit::config::HttpSettings;

const TOKENS: &str = "root tok-a=tenant-a tok-b=tenant-b";

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// Signs in with `token` through the form and returns the `name=value` of the session cookie.
async fn sign_in(app: &TestApp, token: &str) -> String {
    let res = no_redirects()
        .post(app.url("/ui/sign-in"))
        .header("origin", &app.base)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={token}&next=%2Fui%2Fcommands"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "sign-in redirects");
    assert_eq!(res.headers()["location"], "/ui/commands");
    let set = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(set.contains(attribute), "{set}");
    }
    assert!(!set.contains("Secure"), "plain HTTP: no Secure ({set})");
    assert!(!set.contains(token), "the cookie does not carry the token");
    set.split(';').next().unwrap().to_owned()
}

async fn page(app: &TestApp, path: &str, cookie: &str) -> (u16, String) {
    let res = no_redirects().get(app.url(path)).header("cookie", cookie).send().await.unwrap();
    let status = res.status().as_u16();
    (status, res.text().await.unwrap())
}

#[tokio::test]
async fn sign_in_sets_a_safe_session_that_the_read_api_accepts_on_get_only() {
    let app = spawn_with(HttpSettings { api_tokens: secret(TOKENS), ..settings() }).await;
    let client = no_redirects();

    // Not signed in: to the sign-in form, coming back after; the API still says 401.
    let res = client.get(app.url("/ui/tickets?status=Open")).send().await.unwrap();
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/ui/sign-in?next=%2Fui%2Ftickets%3Fstatus%3DOpen");
    let res = client.get(app.url("/")).send().await.unwrap();
    assert_eq!(res.headers()["location"], "/ui");

    // The form: refused from another origin, or with no origin at all; a wrong token is a 401 page.
    let form = |origin: Option<&str>, token: &str| {
        let mut req = client
            .post(app.url("/ui/sign-in"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={token}"));
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        req.send()
    };
    assert_eq!(form(Some("http://evil.example"), "root").await.unwrap().status(), 403);
    assert_eq!(form(None, "root").await.unwrap().status(), 403);
    let wrong = form(Some(&app.base), "nope").await.unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());
    assert!(wrong.text().await.unwrap().contains("not one of the service"));

    // Behind a TLS proxy the cookie is Secure.
    let res = client
        .post(app.url("/ui/sign-in"))
        .header("origin", &app.base)
        .header("x-forwarded-proto", "https")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("token=root")
        .send()
        .await
        .unwrap();
    assert!(res.headers()["set-cookie"].to_str().unwrap().contains("; Secure"));

    let cookie = sign_in(&app, "root").await;
    let (status, html) = page(&app, "/ui/tickets", &cookie).await;
    assert_eq!(status, 200);
    assert!(html.contains("No tickets yet"), "the empty state says what to do");
    // The read API's GET endpoints take the cookie through the same extractor; a POST does not.
    let res = client.get(app.url("/api/v1/commands")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let res = client.get(app.url("/api/v1/ledger/head")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(res.status(), 200, "an admin session is an admin reader");
    let res = client
        .get(app.url("/api/v1/commands"))
        .header("cookie", "ta_session=v1.9999999999.00.AA")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401, "a forged cookie is refused");

    // Sign-out needs the page's form token, then ends the session in the browser.
    let res = client
        .post(app.url("/ui/sign-out"))
        .header("origin", &app.base)
        .header("cookie", &cookie)
        .body("form_token=x")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let token = html.split("name=\"form_token\" value=\"").nth(1).unwrap().split('"').next().unwrap();
    let res = client
        .post(app.url("/ui/sign-out"))
        .header("origin", &app.base)
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("form_token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    assert!(res.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
}

#[tokio::test]
async fn a_tenant_session_sees_its_tenant_only_on_every_page_and_download() {
    let app = spawn_with(HttpSettings { api_tokens: secret(TOKENS), ..settings() }).await;
    app.deliver(&add_ticket("A-1", "tenant-a", "aws")).await;
    app.deliver(&message("A-1", "hi", "ok", &[("aws s3 ls", "ok")])).await;
    let b_seq = app.deliver(&add_ticket("B-1", "tenant-b", "k8s")).await;
    app.deliver(&message("B-1", "hi", "ok", &[("kubectl get secrets", "ok")])).await;
    let a = sign_in(&app, "tok-a").await;

    let (status, html) = page(&app, "/ui/tickets", &a).await;
    assert_eq!(status, 200);
    assert!(html.contains("A-1") && !html.contains("B-1"));
    for path in ["/ui/tickets/B-1", &format!("/ui/deliveries/{b_seq}"), "/ui/ledger", "/ui/tickets/NOPE"] {
        let (status, html) = page(&app, path, &a).await;
        assert_eq!(status, 404, "{path}");
        assert!(html.contains("belongs to a tenant this session cannot see"), "{path}");
    }
    let (_, html) = page(&app, "/ui/tickets?tenant_id=tenant-b", &a).await;
    assert!(!html.contains("B-1"), "a filter cannot widen the scope");
    for path in ["/ui/commands", "/ui/commands.csv", "/ui/commands.ndjson", "/ui/commands.csv?tenant_id=tenant-b"] {
        let (status, body) = page(&app, path, &a).await;
        assert_eq!(status, 200, "{path}");
        assert!(!body.contains("kubectl"), "{path}: {body}");
    }
    let (_, csv) = page(&app, "/ui/commands.csv", &a).await;
    assert!(csv.contains("aws s3 ls"));
    let (status, _) = page(&app, "/ui/ledger", &sign_in(&app, "root").await).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn hostile_content_renders_as_text_under_a_strict_policy() {
    // Open mode (no sign-in); a body limit that takes 1 MiB of output.
    let app = spawn_with(HttpSettings { max_body_bytes: 2 * 1024 * 1024, ..settings() }).await;
    let hostile =
        "<script>document.title='pwned'</script> <a href=\"javascript:alert(1)\">x</a> \u{202E}txt.exe \u{1b}[31mred";
    let long = "line of output\n".repeat(70_000); // 1 MiB
    let seq = app.deliver(&add_ticket("H-1", "t", "agent <b>bold</b>")).await;
    app.deliver(&message("H-1", hostile, hostile, &[(hostile, hostile), ("cat big.log", &long)])).await;

    let res = app.client.get(app.url("/ui/tickets/H-1")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let csp = res.headers()["content-security-policy"].to_str().unwrap().to_owned();
    for directive in ["default-src 'self'", "script-src 'self'", "frame-ancestors 'none'", "object-src 'none'"] {
        assert!(csp.contains(directive), "{csp}");
    }
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(res.headers()["cache-control"], "no-store");
    let html = res.text().await.unwrap();
    assert!(!html.contains("<script>document"), "no markup from the sender");
    assert!(!html.contains("<b>bold"));
    assert!(!html.contains("href=\"javascript:"));
    assert!(html.contains("&lt;script&gt;document.title="));
    assert!(html.contains("\u{27E8}U+202E\u{27E9}txt.exe"), "direction overrides are shown, not obeyed");
    assert!(!html.contains('\u{202E}'));
    assert!(html.contains("\u{241B}[31mred") && !html.contains('\u{1b}'), "ANSI escapes are shown, not obeyed");
    // Long output is folded and capped, with the whole delivery one click away.
    assert!(html.contains("<details"));
    assert!(html.len() < 400_000, "{} bytes", html.len());
    assert!(html.contains(&format!("/api/v1/deliveries/{}/raw", seq + 1)));
    // The page's only script is ours, by URL.
    let scripts: Vec<&str> = html.split("<script").skip(1).collect();
    assert_eq!(scripts.len(), 1);
    assert!(scripts[0].starts_with(" src=\"/ui/assets/app."), "{}", scripts[0]);

    // The delivery page shows the body indented, escaped too.
    let html =
        app.client.get(app.url(&format!("/ui/deliveries/{}", seq + 1))).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("&lt;script&gt;") && !html.contains("<script>document"));
}

#[tokio::test]
async fn risky_and_failed_commands_are_marked_by_the_reporting_rules() {
    let app = spawn_app().await;
    app.deliver(&add_ticket("R-1", "t", "ops")).await;
    app.deliver(&message(
        "R-1",
        "clean up",
        "done",
        &[("rm -rf /tmp/cache", "removed"), ("cat /etc/shadow", "cat: /etc/shadow: Permission denied"), ("ls", "a b")],
    ))
    .await;
    let html = app.client.get(app.url("/ui/tickets/R-1")).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("risk: delete"), "{html}");
    assert!(html.contains(">denied<"));
    assert_eq!(html.matches("entry command risky").count(), 1);
    // The same classes as the SQL reports give, read back from the database's own rules.
    let rules: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT outcome, risk FROM reporting.commands ORDER BY delivery_id, position")
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(rules[0], ("ok".to_owned(), Some("delete".to_owned())));
    assert_eq!(rules[1].0, "denied");
    // The command list filters on them, and its download is exactly the filtered set.
    let html = app.client.get(app.url("/ui/commands?risk=delete")).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("rm -rf /tmp/cache") && !html.contains("/etc/shadow"));
    let ndjson =
        app.client.get(app.url("/ui/commands.ndjson?outcome=denied")).send().await.unwrap().text().await.unwrap();
    let lines: Vec<serde_json::Value> = ndjson.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["command"], "cat /etc/shadow");
    assert_eq!(lines[0]["failed"], true);
    let bad = app.client.get(app.url("/ui/commands?risk=whatever")).send().await.unwrap();
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.unwrap().contains("not a risk class"));
}

#[tokio::test]
async fn the_csv_download_is_the_apis_answer_streamed_across_pages() {
    let app = spawn_app().await;
    app.deliver(&add_ticket("C-1", "t", "ops")).await;
    // More than one download chunk (500) and one API page.
    for batch in 0..12 {
        let cmds: Vec<(String, String)> =
            (0..50).map(|i| (format!("echo {batch}-{i}, \"quoted\"\nline"), format!("{batch}-{i}"))).collect();
        let refs: Vec<(&str, &str)> = cmds.iter().map(|(c, r)| (c.as_str(), r.as_str())).collect();
        app.deliver(&message("C-1", "go", "ok", &refs)).await;
    }
    for filter in ["", "contains=echo%201", "ticket=C-1&order=asc"] {
        let api = walk(&app, &format!("/api/v1/commands?limit=500&{filter}"), None).await;
        let res = app.client.get(app.url(&format!("/ui/commands.csv?{filter}"))).send().await.unwrap();
        assert_eq!(res.headers()["content-type"], "text/csv; charset=utf-8");
        assert!(res.headers()["content-disposition"].to_str().unwrap().contains("attachment"));
        let body = res.text().await.unwrap();
        let mut reader = csv::Reader::from_reader(body.as_bytes());
        let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
        assert_eq!(rows.len(), api.len(), "{filter}");
        for (row, item) in rows.iter().zip(&api) {
            assert_eq!(&row[0], item["id"].as_str().unwrap());
            assert_eq!(&row[5], item["command"].as_str().unwrap());
            assert_eq!(&row[6], item["result"].as_str().unwrap());
            assert_eq!(&row[8], item["recorded_at"].as_str().unwrap());
        }
    }
    assert!(app.count("commands").await >= 600);
}

#[tokio::test]
async fn assets_are_embedded_and_cached_by_content_hash() {
    let app = spawn_app().await;
    let html = app.client.get(app.url("/ui/tickets")).send().await.unwrap().text().await.unwrap();
    for ext in ["css", "js"] {
        let href =
            html.split("/ui/assets/app.").map(|s| s.split('"').next().unwrap()).find(|s| s.ends_with(ext)).unwrap();
        let url = app.url(&format!("/ui/assets/app.{href}"));
        let res = app.client.get(&url).send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert!(res.headers()["cache-control"].to_str().unwrap().contains("immutable"));
        let etag = res.headers()["etag"].clone();
        let again = app.client.get(&url).header("if-none-match", etag).send().await.unwrap();
        assert_eq!(again.status(), 304);
    }
    assert_eq!(app.client.get(app.url("/ui/assets/app.0000.css")).send().await.unwrap().status(), 404);
}

#[tokio::test]
async fn the_ledger_page_verifies_on_a_post_from_its_own_form() {
    let app = spawn_with(HttpSettings { api_tokens: secret(TOKENS), ..settings() }).await;
    app.deliver(&add_ticket("L-1", "tenant-a", "ops")).await;
    let root = sign_in(&app, "root").await;
    let (_, html) = page(&app, "/ui/ledger", &root).await;
    assert!(html.contains("Verify the ledger now"));
    let token = html
        .split("action=\"/ui/ledger/verify\"")
        .nth(1)
        .unwrap()
        .split("value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let post = |cookie: &str, origin: &str, token: &str| {
        no_redirects()
            .post(app.url("/ui/ledger/verify"))
            .header("origin", origin)
            .header("cookie", cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("form_token={token}"))
            .send()
    };
    assert_eq!(post(&root, "http://evil.example", token).await.unwrap().status(), 403);
    assert_eq!(post(&root, &app.base, "forged").await.unwrap().status(), 403);
    let res = post(&root, &app.base, token).await.unwrap();
    assert_eq!(res.status(), 200);
    let html = res.text().await.unwrap();
    assert!(html.contains(">OK<") && html.contains("1 deliveries"), "{html}");
    // A tenant session cannot, even with its own valid form token.
    let a = sign_in(&app, "tok-a").await;
    let (_, tickets) = page(&app, "/ui/tickets", &a).await;
    assert!(!tickets.contains("/ui/ledger\""), "no ledger link for a tenant");
    assert_eq!(post(&a, &app.base, token).await.unwrap().status(), 403, "a form token is bound to its session");
}
