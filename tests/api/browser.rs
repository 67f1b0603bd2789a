//! The web page in a real browser: headless Chromium driven by WebDriver (chromedriver),
//! against the app on port 0 with a fresh database. Screenshots go to target/screenshots/.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them); without them these
//! tests fail and say how to install them.

use std::process::Stdio;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::helpers::*;
use ticket_audit::config::HttpSettings;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// A chromedriver of our own on a free port, and a headless browser session on it; both end
/// when this is dropped.
struct Browser {
    client: Client,
    driver: tokio::process::Child,
}

impl Browser {
    async fn start() -> Browser {
        for (path, package) in [(CHROMEDRIVER, "chromium-driver"), (CHROMIUM, "chromium")] {
            assert!(
                std::path::Path::new(path).exists(),
                "{path} is missing: the browser tests need Debian's chromium and chromedriver. \
                 Install them with `apt-get install -y chromium chromium-driver` ({package}), or run .ci/run"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut driver = tokio::process::Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        // Ready when it says so (no polling).
        let mut lines = BufReader::new(driver.stdout.take().unwrap()).lines();
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("started successfully") {
                break;
            }
        }
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,900", "--no-first-run", "--disable-extensions"]
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a WebDriver session on chromedriver");
        Browser { client, driver }
    }

    async fn screenshot(&self, name: &str) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    async fn text(&self, css: &str) -> String {
        self.client.find(Locator::Css(css)).await.unwrap().text().await.unwrap()
    }

    async fn sign_in(&self, app: &TestApp, token: &str) {
        self.client.goto(&app.url("/ui/tickets")).await.unwrap();
        assert!(self.client.current_url().await.unwrap().path().starts_with("/ui/sign-in"));
        self.client.find(Locator::Css("#token")).await.unwrap().send_keys(token).await.unwrap();
        self.client.find(Locator::Css("form button[type=submit]")).await.unwrap().click().await.unwrap();
        // The sign-in page has an h1 too: wait for the navigation itself, not for an element.
        let (started, mut url) = (std::time::Instant::now(), self.client.current_url().await.unwrap());
        while url.path().starts_with("/ui/sign-in") {
            // A bound against hanging for ever, not a timing: a loaded machine may be slow.
            assert!(started.elapsed() < std::time::Duration::from_secs(60), "still on {url} after signing in");
            url = self.client.current_url().await.unwrap();
        }
        self.client.wait().for_element(Locator::Css("h1")).await.unwrap();
        assert_eq!(url.path(), "/ui/tickets");
    }

    async fn sign_out(&self) {
        self.client.find(Locator::Css(".who form button")).await.unwrap().click().await.unwrap();
        self.client.wait().for_element(Locator::Css("#token")).await.unwrap();
    }

    async fn stop(mut self) {
        let _ = self.client.close().await;
        let _ = self.driver.kill().await;
    }
}

const HOSTILE: &str = "<script>window.__pwned = 1; document.title = 'pwned'</script>\
                       <img src=x onerror=\"window.__pwned = 2; document.title = 'pwned'\">";

#[tokio::test]
async fn a_reader_signs_in_walks_to_a_ticket_filters_and_downloads_and_nothing_injected_runs() {
    let app = spawn_with(HttpSettings { api_tokens: secret("root tok-a=tenant-a"), ..settings() }).await;
    app.deliver(&add_ticket("OPS-1", "tenant-a", "aws-agent")).await;
    app.deliver(&message(
        "OPS-1",
        "The nightly job fails",
        "Looking at the logs",
        &[("aws logs tail /jobs/nightly", "ERROR: access denied"), ("rm -rf /tmp/nightly-cache", "removed")],
    ))
    .await;
    app.deliver(&message("OPS-1", "Anything odd?", "Only this output", &[("cat notes.html", HOSTILE)])).await;
    app.deliver(&add_ticket("OTHER-1", "tenant-b", "k8s-agent")).await;
    app.deliver(&message("OTHER-1", "secret stuff", "ok", &[("kubectl get secrets", "none")])).await;

    let b = Browser::start().await;
    b.sign_in(&app, "root").await;
    assert!(b.text("#tickets").await.contains("OPS-1"));
    b.screenshot("tickets").await;

    // Tickets list -> ticket: the conversation, the risky and failed commands marked.
    b.client.find(Locator::LinkText("OPS-1")).await.unwrap().click().await.unwrap();
    b.client.wait().for_element(Locator::Css("#timeline")).await.unwrap();
    assert_eq!(b.client.current_url().await.unwrap().path(), "/ui/tickets/OPS-1");
    let timeline = b.text("#timeline").await;
    assert!(timeline.contains("The nightly job fails") && timeline.contains("Looking at the logs"));
    assert!(b.text(".entry.risky").await.contains("rm -rf /tmp/nightly-cache"));
    assert!(b.text(".entry.failed").await.contains("access denied"));
    // The injected script and handler are text, and did not run.
    assert!(timeline.contains("<script>window.__pwned"));
    let ran = b.client.execute("return [document.title, typeof window.__pwned]", vec![]).await.unwrap();
    assert_eq!(ran, json!(["OPS-1 · ticket-audit", "undefined"]));
    // The script of ours did run: local times on hover.
    let title = b.client.find(Locator::Css("time[datetime]")).await.unwrap().attr("title").await.unwrap();
    assert!(title.is_some_and(|t| t.ends_with("(your time)")));
    b.screenshot("ticket").await;

    // Commands: filter with the form, then download the CSV as the page links it.
    b.client.goto(&app.url("/ui/commands")).await.unwrap();
    b.client.find(Locator::Css("input[name=contains]")).await.unwrap().send_keys("aws").await.unwrap();
    b.client.find(Locator::Css("form.filters button[type=submit]")).await.unwrap().click().await.unwrap();
    b.client.wait().for_element(Locator::Css("#commands")).await.unwrap();
    let url = b.client.current_url().await.unwrap();
    assert_eq!(url.query(), Some("contains=aws"), "filters live in the query string (empty fields left out)");
    let rows = b.client.find_all(Locator::Css("#commands tbody tr")).await.unwrap();
    assert_eq!(rows.len(), 1);
    b.screenshot("commands").await;
    let href = b.client.find(Locator::LinkText("CSV")).await.unwrap().attr("href").await.unwrap().unwrap();
    let csv = b
        .client
        .execute_async("const [href, done] = arguments; fetch(href).then(r => r.text()).then(done)", vec![json!(href)])
        .await
        .unwrap();
    let csv = csv.as_str().unwrap().to_owned();
    let api = walk(&app, "/api/v1/commands?contains=aws", Some("root")).await;
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), api.len());
    assert_eq!(rows.len(), 1);
    assert_eq!(&rows[0][0], api[0]["id"].as_str().unwrap());
    assert_eq!(&rows[0][5], "aws logs tail /jobs/nightly");
    assert_eq!(&rows[0][12], "denied");

    // A delivery and the ledger.
    b.client.goto(&app.url("/ui/deliveries/3")).await.unwrap();
    assert!(b.text("pre.json").await.contains("\"Action\": \"POST:Ticket/SendTicketMessage\""));
    let ran = b.client.execute("return typeof window.__pwned", vec![]).await.unwrap();
    assert_eq!(ran, json!("undefined"));
    b.screenshot("delivery").await;
    b.client.goto(&app.url("/ui/ledger")).await.unwrap();
    b.client.find(Locator::Css("form[action='/ui/ledger/verify'] button")).await.unwrap().click().await.unwrap();
    b.client.wait().for_element(Locator::Css("section.verify")).await.unwrap();
    assert!(b.text("section.verify").await.contains("The chain verifies: 5 deliveries"));
    b.screenshot("ledger").await;

    // A phone's width.
    b.client.set_window_size(390, 844).await.unwrap();
    b.client.goto(&app.url("/ui/tickets/OPS-1")).await.unwrap();
    b.screenshot("ticket-phone").await;
    b.client.set_window_size(1280, 900).await.unwrap();

    // A tenant's session cannot reach another tenant's ticket by its URL.
    b.sign_out().await;
    b.sign_in(&app, "tok-a").await;
    b.client.goto(&app.url("/ui/tickets/OTHER-1")).await.unwrap();
    assert_eq!(b.text("h1").await, "Not found");
    let body = b.text("body").await;
    assert!(!body.contains("secret stuff") && !body.contains("kubectl"));
    b.client.goto(&app.url("/ui/commands")).await.unwrap();
    assert!(!b.text("body").await.contains("kubectl"));
    b.stop().await;
}

#[tokio::test]
async fn a_command_arrives_live_on_the_open_ticket_and_command_list() {
    let app = spawn_with(HttpSettings { api_tokens: secret("root"), ..settings() }).await;
    app.deliver(&add_ticket("LIVE-1", "t", "agent")).await;
    let b = Browser::start().await;
    b.sign_in(&app, "root").await;
    b.client.goto(&app.url("/ui/tickets/LIVE-1")).await.unwrap();
    b.client.wait().for_element(Locator::Css("body[data-live='open']")).await.unwrap();
    app.deliver(&message("LIVE-1", "are you there?", "yes", &[("uptime", "up 3 days")])).await;
    let arrived = b.client.wait().for_element(Locator::Css("#timeline .entry.new.command")).await.unwrap();
    assert!(arrived.text().await.unwrap().contains("uptime"));
    assert!(b.text("#timeline").await.contains("are you there?"));

    b.client.goto(&app.url("/ui/commands")).await.unwrap();
    b.client.wait().for_element(Locator::Css("body[data-live='open']")).await.unwrap();
    app.deliver(&message("LIVE-1", "again", "yes", &[("df -h", "/dev/sda1 10%")])).await;
    let row = b.client.wait().for_element(Locator::Css("#commands tbody tr.new")).await.unwrap();
    assert!(row.text().await.unwrap().contains("df -h"));
    b.screenshot("commands-live").await;
    b.stop().await;
}
