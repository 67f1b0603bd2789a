//! Secrets never reach the logs, at any level, nor `--help`.

use std::process::Command;

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
    let secret = format!("whsec_{SECRET_B64}");
    let tokens = format!("{ADMIN_TOKEN} {TENANT_TOKEN}=tenant-a");
    let Binary { mut child, base, early_log: mut log, log: rx, reader } = start_binary(&[
        ("DATABASE_URL", &url),
        ("WEBHOOK_SECRET", &secret),
        ("API_TOKENS", &tokens),
        ("RUST_LOG", "trace"),
    ]);
    let addr = base.trim_start_matches("http://").to_owned();
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
