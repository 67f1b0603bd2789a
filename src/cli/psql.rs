//! `ticket-audit psql`: an interactive psql on whichever database the service uses: the private
//! cluster (started for the session if no service runs it) or DATABASE_URL; the replica
//! (DATABASE_READ_URL) when one is given, unless `--primary`.

use std::ffi::OsString;
use std::process::ExitCode;

use clap::Args;
use secrecy::ExposeSecret;

use crate::config::DatabaseArgs;
use crate::store::database::LOCAL_DATABASE;
use crate::store::Database;
use crate::BoxError;

#[derive(Debug, Clone, Args)]
pub struct PsqlArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Open the shell on the primary (DATABASE_URL) even when DATABASE_READ_URL names a replica.
    #[arg(long)]
    pub primary: bool,
    /// Arguments for psql itself, after `--` (e.g. `-- -c 'TABLE ledger_head'`).
    #[arg(last = true, value_name = "PSQL ARGS")]
    pub args: Vec<OsString>,
}

pub async fn run(args: PsqlArgs) -> Result<ExitCode, BoxError> {
    let replica = args.database.database_read_url.as_ref().filter(|_| !args.primary);
    let db = match replica {
        // Nothing to start or prepare: the replica is someone else's server.
        Some(_) => None,
        None => Some(Database::resolve(&args.database, false, 0).await?),
    };
    let mut cmd = tokio::process::Command::new("psql");
    match (db.as_ref().and_then(|db| db.local.as_ref()), replica.or(args.database.database_url.as_ref())) {
        (Some(local), _) => {
            cmd.args(local.psql_args(LOCAL_DATABASE));
        }
        (None, Some(url)) => {
            // The password goes in the environment, not on a command line anyone can list.
            let (url, password) = split_password(url.expose_secret());
            if let Some(password) = password {
                cmd.env("PGPASSWORD", password);
            }
            cmd.arg("-d").arg(url);
        }
        (None, None) => unreachable!("a database is either given or private"),
    }
    cmd.args(&args.args);
    // psql's own bound on connecting, in whole seconds (libpq takes no less than 2).
    if std::env::var_os("PGCONNECT_TIMEOUT").is_none() {
        let secs = args.database.db_connect_timeout_ms.div_ceil(1000).max(2);
        cmd.env("PGCONNECT_TIMEOUT", secs.to_string());
    }
    // Ctrl-C is psql's (it cancels the query): it must not end us, and with us a private cluster.
    let mut interrupts = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let result = match cmd.spawn() {
        Ok(mut child) => loop {
            tokio::select! {
                status = child.wait() => break status.map_err(BoxError::from),
                _ = interrupts.recv() => {}
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err("psql is not on PATH: install the PostgreSQL client (e.g. `apt-get install postgresql-client`)".into())
        }
        Err(e) => Err(format!("starting psql: {e}").into()),
    };
    if let Some(db) = db {
        db.stop().await;
    }
    let status = result?;
    Ok(ExitCode::from(status.code().map_or(1, |c| u8::try_from(c).unwrap_or(1))))
}

/// `postgres://user:secret@host/db` into `postgres://user@host/db` and the decoded `secret`.
fn split_password(url: &str) -> (String, Option<String>) {
    let Some((scheme, rest)) = url.split_once("://") else { return (url.to_owned(), None) };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else { return (url.to_owned(), None) };
    let Some((user, password)) = rest[..at].split_once(':') else { return (url.to_owned(), None) };
    (format!("{scheme}://{user}{}", &rest[at..]), Some(percent_decode(password)))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_leaves_the_url() {
        let (url, pw) = split_password("postgres://app:p%40ss:w@db.example:5432/audit?sslmode=require");
        assert_eq!(url, "postgres://app@db.example:5432/audit?sslmode=require");
        assert_eq!(pw.as_deref(), Some("p@ss:w"));
        assert_eq!(split_password("postgres://app@db/audit"), ("postgres://app@db/audit".to_owned(), None));
        assert_eq!(split_password("postgres:///audit?host=/run/x"), ("postgres:///audit?host=/run/x".to_owned(), None));
    }
}
