//! Secrets never reach the logs, at any level, nor `--help`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::helpers::*;

const SECRET_B64: &str = "c2VjcmV0LWtleS1tdXN0LW5vdC1sZWFrLTAxMjM0NTY3";
const ADMIN_TOKEN: &str = "admin-token-must-not-leak-8c1d";
const TENANT_TOKEN: &str = "tenant-token-must-not-leak-77aa";
const DB_PASSWORD: &str = "db-password-must-not-leak-5f0e";

#[tokio::test]
async fn no_secret_or_token_appears_in_any_log_line() {
    let (_, name) = fresh_database().await;
    let url = database_url(&name);
    // Trust authentication ignores the password; it is there to see whether anything prints it.
    let url = url.replacen("postgres://postgres@", &format!("postgres://postgres:{DB_PASSWORD}@"), 1);
    assert!(url.contains(DB_PASSWORD), "{url}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ticket-audit"))
        .arg("serve")
        .env("DATABASE_URL", &url)
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("WEBHOOK_SECRET", format!("whsec_{SECRET_B64}"))
        .env("API_TOKENS", format!("{ADMIN_TOKEN} {TENANT_TOKEN}=tenant-a"))
        .env("RUST_LOG", "trace")
        .env("LOG_FORMAT", "json")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut log = Vec::new();
    let addr = loop {
        let line = rx.recv_timeout(std::time::Duration::from_secs(60)).expect("the service logs where it listens");
        log.push(line.clone());
        let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
        if event["message"] == "listening" {
            break event["addr"].as_str().unwrap().to_owned();
        }
    };
    let client = reqwest::Client::new();
    let body = fixture("add_ticket.json");
    let ts = now();
    let sig = sign(SECRET_B64, "msg_1", ts, body.as_bytes());
    let ok = client
        .post(format!("http://{addr}/webhooks"))
        .header("webhook-id", "msg_1")
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", &sig)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 202);
    let bad = client
        .post(format!("http://{addr}/webhooks"))
        .header("webhook-signature", "v1,AAAA")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
    for token in [ADMIN_TOKEN, TENANT_TOKEN, "wrong-token"] {
        client.get(format!("http://{addr}/api/v1/tickets")).bearer_auth(token).send().await.unwrap();
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(child.wait().unwrap().success(), "SIGTERM ends the service cleanly");
    reader.join().unwrap();
    log.extend(rx.try_iter());
    let all = log.join("\n");
    assert!(all.contains(r#""level":"DEBUG""#), "the most verbose logging was on");
    for secret in [SECRET_B64, ADMIN_TOKEN, TENANT_TOKEN, DB_PASSWORD, &sig[3..]] {
        assert!(!all.contains(secret), "a secret appears in the logs: {secret}");
    }

    let help = Command::new(env!("CARGO_BIN_EXE_ticket-audit"))
        .args(["serve", "--help"])
        .env("WEBHOOK_SECRET", format!("whsec_{SECRET_B64}"))
        .env("API_TOKENS", ADMIN_TOKEN)
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("WEBHOOK_SECRET") && help.contains("API_TOKENS"));
    assert!(!help.contains(SECRET_B64) && !help.contains(ADMIN_TOKEN) && !help.contains(DB_PASSWORD));
}
