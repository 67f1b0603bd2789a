//! A private PostgreSQL cluster run from the installed binaries, for when no DATABASE_URL is given.
//!
//! The server listens only on a Unix socket in a directory of its own, so it never clashes with a
//! system PostgreSQL. A guardian child process stops it (and removes ephemeral clusters) once we
//! are gone, however we go: the guardian blocks reading a pipe whose only write end lives in
//! [`LocalPostgres`], and the kernel closes that end when we exit, panic or are SIGKILLed.

use std::io::{Read, Seek, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use nix::fcntl::{Flock, FlockArg};
use sqlx::postgres::PgConnectOptions;
use tokio::process::{Child, Command};

/// The superuser initdb creates.
const SUPERUSER: &str = "postgres";
/// Only names the socket file: the socket directory is private, so the default port cannot clash.
const PORT: u16 = 5432;
/// sun_path holds 108 bytes on Linux and 104 on macOS; stay clear of both.
const MAX_SOCKET_PATH: usize = 100;

/// Waits for EOF on stdin (we are gone, or called `stop`), then stops the server and removes an
/// ephemeral cluster. Paths arrive as positional parameters, so nothing is interpolated into it.
/// $1 = pg_ctl, $2 = data dir, $3 = "ephemeral" or "durable", $4 = socket dir.
const GUARDIAN_SCRIPT: &str = r#"cat >/dev/null
"$1" -D "$2" -m fast -w stop >>"$2/server.log" 2>&1
rc=$?
if [ "$3" = ephemeral ]; then rm -rf -- "$2" "$4"; fi
exit $rc"#;

/// How long a command waits for a cluster that another process is starting.
const WAIT_FOR_OTHER_START: std::time::Duration = std::time::Duration::from_secs(60);

/// How to run the cluster.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalOptions {
    /// Throwaway cluster for tests: fsync=off, synchronous_commit=off, full_page_writes=off, the WAL written every 10 ms; the directory is removed when the cluster stops.
    pub ephemeral: bool,
    /// Refuse to start when another process runs the cluster (`serve`: it must own the server it
    /// depends on, or that process's exit would stop the server under it). Without it, a cluster
    /// another process runs is used as it is (`verify` while `serve` runs).
    pub exclusive: bool,
}

/// A running private cluster. [`LocalPostgres::stop`] shuts it down and waits; merely dropping it
/// lets the guardian stop the server in the background.
#[derive(Debug)]
pub struct LocalPostgres {
    data_dir: PathBuf,
    socket_dir: PathBuf,
    ephemeral: bool,
    /// Its stdin is the pipe whose closing tells it to stop the server; `None` once closed.
    guardian: Option<Child>,
    /// The data directory's lock (`<data dir>.lock`), held while we run the server. The guardian
    /// holds it too (as its stdout), so it is free only once the server is stopped.
    lock: Option<Flock<std::fs::File>>,
}

/// Why the private cluster could not be started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum LocalPgError {
    #[error(
        "no PostgreSQL server binaries (initdb, pg_ctl, postgres) found on PATH or in \
         /usr/lib/postgresql/*/bin, /usr/local/pgsql/bin, /usr/pgsql-*/bin, /opt/homebrew/bin, \
         /usr/local/bin: install PostgreSQL (e.g. `apt-get install postgresql`), or set \
         DATABASE_URL to an existing server, or run `docker compose up`"
    )]
    NoBinaries,
    #[error(
        "running as root, but there is neither a `postgres` nor a `nobody` user to run the \
         PostgreSQL server as (it refuses to run as root): create a `postgres` user, or set \
         DATABASE_URL to an existing server"
    )]
    NoServerUser,
    #[error(
        "the PostgreSQL server runs as user `{user}` (it refuses to run as root), and that user \
         cannot read, write and enter {dir}; probably a parent directory is private (like /root): \
         choose a data directory elsewhere (e.g. under /var/lib or /tmp), or set DATABASE_URL"
    )]
    DirNotAccessible { dir: PathBuf, user: String },
    #[error("pg_ctl cannot handle \", $, ` or \\ in a data directory path ({0}): choose another")]
    UnsupportedPath(PathBuf),
    #[error("a PostgreSQL server is already running in {0} (another instance?): stop it first")]
    AlreadyRunning(PathBuf),
    #[error(
        "another ticket-audit process ({owner}) runs the private PostgreSQL in {dir}: stop it first, \
         or give this one another DATA_DIR (two services on one data directory would share one \
         server, and the first to stop would take it away from the other)"
    )]
    InUse { dir: PathBuf, owner: String },
    #[error("another ticket-audit process ({owner}) is starting the private PostgreSQL in {dir}, and it is not up after {secs} s")]
    OtherStartTimedOut { dir: PathBuf, owner: String, secs: u64 },
    #[error("could not {what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("`{command}` failed ({status}):\n{output}")]
    Command { command: String, status: String, output: String },
}

impl LocalPostgres {
    /// Initialise the cluster in `dir` if it has none (initdb), then start it and wait until it
    /// accepts connections. Reuses an existing cluster; a stale postmaster.pid left by a killed
    /// server is no obstacle (the postmaster itself discards a lock file whose process is gone).
    pub async fn start(dir: &Path, opts: LocalOptions) -> Result<LocalPostgres, LocalPgError> {
        let bin_dir = find_bin_dir().ok_or(LocalPgError::NoBinaries)?;
        let user = ServerUser::for_this_process()?;
        let data_dir = std::path::absolute(dir).map_err(io_err(format!("resolve {dir:?}")))?;
        // pg_ctl hands paths to /bin/sh between double quotes, where these characters are special.
        if data_dir.to_string_lossy().contains(['"', '$', '`', '\\']) {
            return Err(LocalPgError::UnsupportedPath(data_dir));
        }
        prepare_data_dir(&data_dir, &user).await?;
        let lock = if opts.ephemeral {
            None // a directory of the test run's own
        } else {
            match take_lock_waiting_for_the_dead(&data_dir).await? {
                Lock::Taken(lock) => Some(lock),
                Lock::Busy { owner } if opts.exclusive => return Err(LocalPgError::InUse { dir: data_dir, owner }),
                Lock::Busy { owner } => {
                    // Its owner runs it (or is starting it): use it, and leave stopping it to its owner.
                    wait_until_running(&bin_dir, &data_dir, &user, &owner).await?;
                    tracing::info!("using the private PostgreSQL that {owner} runs in {}", data_dir.display());
                    let socket_dir = socket_dir_for(&data_dir);
                    return Ok(LocalPostgres { data_dir, socket_dir, ephemeral: false, guardian: None, lock: None });
                }
            }
        };
        let kind = if opts.ephemeral { "ephemeral" } else { "durable" };
        tracing::info!(
            "starting private PostgreSQL cluster ({kind}) in {}, binaries from {}, as user {}",
            data_dir.display(),
            bin_dir.display(),
            user.name
        );

        if !data_dir.join("PG_VERSION").exists() {
            tracing::info!("initialising a new PostgreSQL cluster in {}", data_dir.display());
            let mut initdb = user.command(&bin_dir.join("initdb"));
            initdb.arg("-D").arg(&data_dir);
            initdb.args(["--username=postgres", "--auth=trust", "--encoding=UTF8", "--locale=C"]);
            if opts.ephemeral {
                initdb.arg("--no-sync"); // the files do not outlive us, so flushing them is moot
            }
            run(initdb, &user, None).await?;
        }
        let socket_dir = socket_dir_for(&data_dir);
        create_private_dir(&socket_dir, &user)?;

        // A server running here already is not ours: the guardian must never stop it (or remove it).
        if is_running(&bin_dir, &data_dir, &user).await {
            if opts.ephemeral {
                return Err(LocalPgError::AlreadyRunning(data_dir));
            }
            // No ticket-audit process owns it (we hold the lock): started by hand, or still being
            // stopped by a guardian. Use it; we keep the lock, so no other service starts beside us.
            tracing::info!(
                "using the PostgreSQL server already running in {} (not started by ticket-audit)",
                data_dir.display()
            );
            return Ok(LocalPostgres { data_dir, socket_dir, ephemeral: false, guardian: None, lock });
        }
        // The guardian comes first, so the server never runs unguarded. Spawning it only after
        // initdb accepted the directory (as empty or as a cluster) keeps its `rm -rf` on our files.
        let guardian_lock =
            lock.as_ref().map(|l| l.try_clone()).transpose().map_err(io_err("share the data directory lock".into()))?;
        let guardian = spawn_guardian(&bin_dir, &data_dir, &socket_dir, kind, &user, guardian_lock)?;
        let mut pg = LocalPostgres { data_dir, socket_dir, ephemeral: opts.ephemeral, guardian: Some(guardian), lock };

        let log = pg.data_dir.join("server.log");
        let mut pg_ctl = user.command(&bin_dir.join("pg_ctl"));
        // -l matters beyond logging: without it the postmaster would inherit our stdout pipe, and
        // reading pg_ctl's output would never end.
        pg_ctl.arg("-D").arg(&pg.data_dir).arg("-l").arg(&log);
        pg_ctl.arg("-o").arg(server_options(&pg.socket_dir, opts));
        pg_ctl.args(["-w", "-t", "60", "start"]);
        if let Err(e) = run(pg_ctl, &user, Some(&log)).await {
            // The error holds the log tail already; the guardian stops a server still coming up.
            let _ = pg.shut_down_guardian().await;
            return Err(e);
        }
        tracing::info!("private PostgreSQL is up, socket directory {}", pg.socket_dir.display());
        Ok(pg)
    }

    /// A streaming replica of the server at `primary` (a superuser or a login with REPLICATION),
    /// in `dir`, which must not exist: `pg_basebackup -R` copies the primary there and configures
    /// it to follow, then it is started as [`LocalPostgres::start`] starts a cluster (its own
    /// socket directory; with `ephemeral`, removed when it stops). The primary must allow
    /// replication connections (the private cluster's trust authentication does).
    pub async fn start_replica(
        dir: &Path,
        primary: &PgConnectOptions,
        opts: LocalOptions,
    ) -> Result<LocalPostgres, LocalPgError> {
        let bin_dir = find_bin_dir().ok_or(LocalPgError::NoBinaries)?;
        let user = ServerUser::for_this_process()?;
        let data_dir = std::path::absolute(dir).map_err(io_err(format!("resolve {dir:?}")))?;
        let mut backup = user.command(&client_tool(&bin_dir, "pg_basebackup"));
        backup.arg("-D").arg(&data_dir);
        match primary.get_socket() {
            Some(socket) => backup.arg("-h").arg(socket),
            None => backup.arg("-h").arg(primary.get_host()),
        };
        backup.arg("-p").arg(primary.get_port().to_string()).arg("-U").arg(primary.get_username());
        // -R: standby.signal and primary_conninfo; a fast checkpoint, not one spread over minutes.
        backup.args(["-R", "--checkpoint=fast", "--wal-method=stream", "--no-password"]);
        if opts.ephemeral {
            backup.arg("--no-sync");
        }
        run(backup, &user, None).await?;
        // The copy holds the primary's files beside its data: its socket's lock file (whose live
        // pid would stop this server starting) and its log.
        let _ = std::fs::remove_dir_all(data_dir.join("run"));
        let _ = std::fs::remove_file(data_dir.join("server.log"));
        Self::start(&data_dir, opts).await
    }

    /// How to reach `database` as the cluster's superuser, over the Unix socket.
    pub fn connect_options(&self, database: &str) -> PgConnectOptions {
        PgConnectOptions::new().socket(&self.socket_dir).port(PORT).username(SUPERUSER).database(database)
    }

    /// The arguments that point psql at `database` (`-h <socket dir> -p <port> -U postgres -d <db>`).
    pub fn psql_args(&self, database: &str) -> Vec<std::ffi::OsString> {
        let mut args: Vec<std::ffi::OsString> = vec!["-h".into(), self.socket_dir.clone().into_os_string()];
        args.extend([
            "-p".into(),
            PORT.to_string().into(),
            "-U".into(),
            SUPERUSER.into(),
            "-d".into(),
            database.into(),
        ]);
        args
    }

    /// Whether this process started the server (and stops it), or uses one another process runs.
    pub fn is_owned(&self) -> bool {
        self.guardian.is_some()
    }

    /// Absolute path of the data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Absolute path of the directory holding the server's socket (for `psql -h <socket dir>`).
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// Stop the server (pg_ctl stop -m fast), wait for it, and for ephemeral clusters remove the
    /// directory.
    pub async fn stop(mut self) -> Result<(), LocalPgError> {
        if self.guardian.is_none() {
            return Ok(()); // attached to a cluster another process runs
        }
        tracing::info!("stopping private PostgreSQL cluster in {}", self.data_dir.display());
        let stopped = self.shut_down_guardian().await;
        if self.ephemeral {
            // The guardian removed all the server user may remove. If that user cannot write the
            // parent, the emptied directory itself is left, and (as root) we can remove it.
            for dir in [&self.data_dir, &self.socket_dir] {
                match tokio::fs::remove_dir_all(dir).await {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(io_err(format!("remove {}", dir.display()))(e));
                    }
                    _ => {}
                }
            }
        }
        stopped
    }

    /// Closes the guardian's pipe and waits until it has stopped the server.
    async fn shut_down_guardian(&mut self) -> Result<(), LocalPgError> {
        let Some(mut guardian) = self.guardian.take() else {
            return Ok(());
        };
        drop(guardian.stdin.take());
        let status = guardian.wait().await.map_err(io_err("wait for the guardian".into()))?;
        drop(self.lock.take()); // the server is stopped: another process may run it now
        if status.success() {
            return Ok(());
        }
        let log = log_tail(&self.data_dir.join("server.log")).await;
        Err(LocalPgError::Command {
            command: format!("pg_ctl -D {} -m fast stop", self.data_dir.display()),
            status: status.to_string(),
            output: log.unwrap_or_else(|| "(the server log is gone)".into()),
        })
    }
}

impl Drop for LocalPostgres {
    /// Without `stop()` we cannot wait (there may be no runtime left), so only close the pipe: the
    /// guardian stops the server in the background, as it would had the process died.
    fn drop(&mut self) {
        if let Some(mut guardian) = self.guardian.take() {
            drop(guardian.stdin.take());
            // The guardian keeps the lock until the server is stopped.
            drop(self.lock.take());
            tracing::debug!("PostgreSQL in {} is left to its guardian", self.data_dir.display());
        }
    }
}

/// The first directory holding all of initdb, pg_ctl and postgres: mixing versions fails oddly.
fn find_bin_dir() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let fixed = |dir: &str| [PathBuf::from(dir)];
    std::env::split_paths(&path)
        .filter(|dir| dir.is_absolute()) // children run from "/", where "." means something else
        .chain(versioned_dirs("/usr/lib/postgresql", ""))
        .chain(fixed("/usr/local/pgsql/bin"))
        .chain(versioned_dirs("/usr", "pgsql-"))
        .chain(fixed("/opt/homebrew/bin"))
        .chain(fixed("/usr/local/bin"))
        .find(|dir| {
            ["initdb", "pg_ctl", "postgres"]
                .iter()
                .all(|name| std::fs::metadata(dir.join(name)).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0))
        })
}

/// A client program of the same version as the server binaries: beside them, or beside what
/// they link to (a PATH directory may hold links to initdb, pg_ctl and postgres only).
fn client_tool(bin_dir: &Path, name: &str) -> PathBuf {
    let here = bin_dir.join(name);
    if here.is_file() {
        return here;
    }
    std::fs::canonicalize(bin_dir.join("pg_ctl"))
        .ok()
        .and_then(|pg_ctl| Some(pg_ctl.parent()?.join(name)))
        .filter(|p| p.is_file())
        .unwrap_or(here)
}

/// `<parent>/<prefix><version>/bin`, highest version first (numerically: 16 beats 9.6).
fn versioned_dirs(parent: &str, prefix: &str) -> Vec<PathBuf> {
    let entries = std::fs::read_dir(parent).into_iter().flatten().flatten();
    let mut found: Vec<(Vec<u32>, PathBuf)> = entries
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let parts = name.strip_prefix(prefix)?.split('.');
            let version = parts.map(|p| p.parse().ok()).collect::<Option<_>>()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    found.sort_by(|a, b| b.0.cmp(&a.0));
    found.into_iter().map(|(_, dir)| dir).collect()
}

/// Who the server runs as. PostgreSQL refuses to run as root, so root hands it to another user.
#[derive(Debug)]
struct ServerUser {
    name: String,
    uid: u32,
    gid: u32,
    /// Whether children must switch to `uid`/`gid` (only when we are root).
    switch: bool,
}

impl ServerUser {
    fn for_this_process() -> Result<Self, LocalPgError> {
        use nix::unistd::{getegid, geteuid, User};
        let me = geteuid();
        if !me.is_root() {
            let name = User::from_uid(me).ok().flatten().map_or_else(|| me.to_string(), |u| u.name);
            let (uid, gid) = (me.as_raw(), getegid().as_raw());
            return Ok(ServerUser { name, uid, gid, switch: false });
        }
        let user = ["postgres", "nobody"].into_iter().find_map(|n| User::from_name(n).ok().flatten());
        let user = user.ok_or(LocalPgError::NoServerUser)?;
        let (uid, gid) = (user.uid.as_raw(), user.gid.as_raw());
        Ok(ServerUser { name: user.name, uid, gid, switch: true })
    }

    /// A command that runs as this user, from "/" (our working directory may be closed to it).
    fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir("/").stdin(Stdio::null());
        if self.switch {
            cmd.uid(self.uid).gid(self.gid); // std also drops root's supplementary groups
        }
        cmd
    }

    fn chown(&self, path: &Path) -> Result<(), LocalPgError> {
        if !self.switch {
            return Ok(());
        }
        let what = format!("hand {} to user {}", path.display(), self.name);
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid)).map_err(io_err(what))
    }
}

/// Creates the data directory (and missing parents) for the server user, then proves by trying, as
/// that user, that it can use it: only a real attempt sees every parent's permissions.
async fn prepare_data_dir(data_dir: &Path, user: &ServerUser) -> Result<(), LocalPgError> {
    let missing: Vec<&Path> = data_dir.ancestors().take_while(|d| !d.exists()).collect();
    for dir in missing.iter().rev() {
        std::fs::create_dir(dir).map_err(io_err(format!("create {}", dir.display())))?;
        user.chown(dir)?;
    }
    if !user.switch {
        return Ok(()); // our own directory: initdb's errors are clear enough
    }
    if !data_dir.join("PG_VERSION").exists() {
        user.chown(data_dir)?; // initdb needs to own a directory created in advance for it
    }
    let mut probe = user.command(Path::new("/bin/sh"));
    probe.args(["-c", r#"test -r "$1" && test -w "$1" && test -x "$1""#, "probe"]).arg(data_dir);
    let status = probe.status().await.map_err(io_err("run /bin/sh to test access".into()))?;
    if status.success() {
        return Ok(());
    }
    for dir in &missing {
        let _ = std::fs::remove_dir(dir); // a start that cannot work should leave nothing behind
    }
    Err(LocalPgError::DirNotAccessible { dir: data_dir.to_owned(), user: user.name.clone() })
}

/// `<data dir>/run` when the socket path fits in sun_path, else a per-cluster temp directory.
fn socket_dir_for(data_dir: &Path) -> PathBuf {
    let local = data_dir.join("run");
    if local.join(format!(".s.PGSQL.{PORT}")).as_os_str().len() < MAX_SOCKET_PATH {
        return local;
    }
    // FNV-1a, stable across Rust releases (unlike DefaultHasher): a cluster keeps its directory.
    let bytes = data_dir.as_os_str().as_bytes();
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    std::env::temp_dir().join(format!("pglocal-{:012x}", hash >> 16))
}

/// A 0700 directory owned by the server user. One that exists already must be the server's: in
/// the shared temp directory, someone else could plant a socket for our clients to talk to.
fn create_private_dir(dir: &Path, user: &ServerUser) -> Result<(), LocalPgError> {
    let what = format!("prepare socket directory {}", dir.display());
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return user.chown(dir),
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(io_err(what)(e)),
        Err(_) => {}
    }
    let meta = std::fs::symlink_metadata(dir).map_err(io_err(what.clone()))?;
    if meta.is_dir() && meta.uid() == user.uid {
        return Ok(());
    }
    let wrong = std::io::Error::other(format!("it is not a directory owned by {}", user.name));
    Err(io_err(what)(wrong))
}

/// Passed on every start rather than written into the cluster, so nothing can go stale (say, the
/// socket path after the directory moved). pg_ctl runs the string through /bin/sh: quote for it.
fn server_options(socket_dir: &Path, opts: LocalOptions) -> String {
    // unix_socket_directories is a list: double quotes keep a comma in the path from splitting it.
    let socket_list = socket_dir.to_string_lossy().replace('"', "\"\"");
    let mut settings = vec![
        "listen_addresses=".to_owned(), // no TCP at all
        format!("port={PORT}"),
        format!("unix_socket_directories=\"{socket_list}\""),
    ];
    if opts.ephemeral {
        let fast = ["fsync", "synchronous_commit", "full_page_writes"].map(|s| format!("{s}=off"));
        settings.extend(fast);
        // Tests open many small pools.
        settings.push("max_connections=200".into());
        // With synchronous_commit off, a commit reaches a replica only when the WAL writer writes
        // it: every 10 ms rather than 200, so the replica tests' reads wait for no more.
        settings.push("wal_writer_delay=10ms".into());
    } else {
        settings.push(format!("shared_buffers={}MB", shared_buffers_mb(physical_memory())));
    }
    let quoted = settings.iter().map(|s| format!("-c '{}'", s.replace('\'', r"'\''")));
    quoted.collect::<Vec<_>>().join(" ")
}

/// The private cluster's page cache: a quarter of the machine's memory, from PostgreSQL's default
/// of 128 MB up to 4 GB. A ticket's timeline at 10^7 commands reads about 30 pages scattered over
/// the store; with the default, the pages of the tickets people read fall out of it and come from
/// the kernel's cache at every read (bench/README.md, "At 10^7 commands"). Unknown memory: the
/// default.
fn shared_buffers_mb(memory: Option<u64>) -> u64 {
    const MB: u64 = 1 << 20;
    memory.map_or(128, |bytes| (bytes / 4 / MB).clamp(128, 4096))
}

/// Physical memory in bytes (Linux's `/proc/meminfo`; none elsewhere or when unreadable).
fn physical_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb = info.lines().find_map(|l| l.strip_prefix("MemTotal:"))?.trim().strip_suffix("kB")?.trim();
    kb.parse::<u64>().ok()?.checked_mul(1024)
}

fn spawn_guardian(
    bin_dir: &Path,
    data_dir: &Path,
    socket_dir: &Path,
    kind: &str,
    user: &ServerUser,
    lock: Option<std::fs::File>,
) -> Result<Child, LocalPgError> {
    let mut cmd = user.command(Path::new("/bin/sh"));
    cmd.args(["-c", GUARDIAN_SCRIPT, "pglocal-guardian"]);
    cmd.arg(bin_dir.join("pg_ctl")).arg(data_dir).arg(kind).arg(socket_dir);
    // Our end of the pipe is close-on-exec, so no other child holds it open. Own process group: a
    // Ctrl-C meant for us must not kill the guardian before it has done its job. Output is not
    // piped to us: once we are gone, writing to such a pipe would kill it with SIGPIPE. Its stdout
    // is the data directory's lock file (it writes nothing there): holding that open file, it holds
    // the lock until it has stopped the server, even after we are gone.
    let stdout = lock.map_or_else(Stdio::null, Stdio::from);
    cmd.stdin(Stdio::piped()).stdout(stdout).stderr(Stdio::null()).process_group(0);
    cmd.spawn().map_err(io_err("spawn the guardian (/bin/sh)".into()))
}

/// Runs a command to completion; a failure carries its output and the tail of the server log.
async fn run(mut cmd: Command, user: &ServerUser, log: Option<&Path>) -> Result<(), LocalPgError> {
    let command = describe(&cmd, user);
    let out = cmd.output().await.map_err(io_err(format!("run `{command}`")))?;
    if out.status.success() {
        return Ok(());
    }
    let text = if out.stderr.is_empty() { &out.stdout } else { &out.stderr };
    let mut output = String::from_utf8_lossy(text).trim_end().to_owned();
    if let Some(log) = log {
        let tail = log_tail(log).await.unwrap_or_default();
        output = format!("{output}\n--- end of {} ---\n{tail}", log.display());
    }
    Err(LocalPgError::Command { command, status: out.status.to_string(), output })
}

/// The end of the server log: enough to show why the server would not start or stop.
async fn log_tail(path: &Path) -> Option<String> {
    let bytes = tokio::fs::read(path).await.ok()?;
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    Some(lines[lines.len().saturating_sub(30)..].join("\n"))
}

fn describe(cmd: &Command, user: &ServerUser) -> String {
    let cmd = cmd.as_std();
    let mut text = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        text = format!("{text} {}", arg.to_string_lossy());
    }
    if user.switch {
        text = format!("{text} (as user {})", user.name);
    }
    text
}

fn io_err(what: String) -> impl FnOnce(std::io::Error) -> LocalPgError {
    move |source| LocalPgError::Io { what, source }
}

enum Lock {
    Taken(Flock<std::fs::File>),
    Busy { owner: String },
}

/// Takes the lock; while it is held only by the guardian of a process that is gone (stopping
/// that process's server), waits for it, bounded: a service restarted right after a crash
/// starts instead of being refused.
async fn take_lock_waiting_for_the_dead(data_dir: &Path) -> Result<Lock, LocalPgError> {
    let started = std::time::Instant::now();
    loop {
        let (lock, pid) = take_lock(data_dir)?;
        let gone = pid.is_some_and(|pid| {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) == Err(nix::errno::Errno::ESRCH)
        });
        if !gone || matches!(lock, Lock::Taken(_)) || started.elapsed() > WAIT_FOR_OTHER_START {
            return Ok(lock);
        }
        tracing::debug!(
            "the lock of {} is held by the guardian of a process that is gone; waiting",
            data_dir.display()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Takes `<data dir>.lock` (flock, so the kernel frees it when its holders are gone, however they
/// go) and writes our pid in it; when another process holds it, says which.
fn take_lock(data_dir: &Path) -> Result<(Lock, Option<i32>), LocalPgError> {
    let mut path = data_dir.as_os_str().to_owned();
    path.push(".lock");
    let path = PathBuf::from(path);
    let what = format!("open the lock file {}", path.display());
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_err(what))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(mut lock) => {
            let pid = std::process::id();
            let written = lock.set_len(0).and_then(|()| lock.rewind()).and_then(|()| writeln!(lock, "{pid}"));
            written.map_err(io_err(format!("write {}", path.display())))?;
            Ok((Lock::Taken(lock), None))
        }
        Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            let pid = text.trim().parse::<i32>().ok();
            let owner = pid.map_or_else(|| "unknown pid".to_owned(), |pid| format!("pid {pid}"));
            Ok((Lock::Busy { owner }, pid))
        }
        Err((_, errno)) => Err(io_err(format!("lock {}", path.display()))(std::io::Error::from(errno))),
    }
}

async fn is_running(bin_dir: &Path, data_dir: &Path, user: &ServerUser) -> bool {
    let mut status = user.command(&bin_dir.join("pg_ctl"));
    status.arg("-D").arg(data_dir).arg("status");
    run(status, user, None).await.is_ok()
}

/// Waits, bounded, until the server another process is starting accepts connections.
async fn wait_until_running(
    bin_dir: &Path,
    data_dir: &Path,
    user: &ServerUser,
    owner: &str,
) -> Result<(), LocalPgError> {
    let started = std::time::Instant::now();
    let ready = data_dir.join("postmaster.pid");
    loop {
        // pg_ctl start -w writes "ready" in postmaster.pid's status line once connections are accepted.
        let up = std::fs::read_to_string(&ready).is_ok_and(|s| s.lines().nth(7).is_some_and(|l| l.trim() == "ready"));
        if up && is_running(bin_dir, data_dir, user).await {
            return Ok(());
        }
        if started.elapsed() > WAIT_FOR_OTHER_START {
            let (dir, owner, secs) = (data_dir.to_owned(), owner.to_owned(), WAIT_FOR_OTHER_START.as_secs());
            return Err(LocalPgError::OtherStartTimedOut { dir, owner, secs });
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_cache_is_a_quarter_of_memory_within_bounds() {
        const GB: u64 = 1 << 30;
        assert_eq!(shared_buffers_mb(None), 128);
        assert_eq!(shared_buffers_mb(Some(GB / 4)), 128, "never below the default");
        assert_eq!(shared_buffers_mb(Some(2 * GB)), 512);
        assert_eq!(shared_buffers_mb(Some(24 * GB)), 4096, "at most 4 GB");
        assert_eq!(shared_buffers_mb(Some(u64::MAX)), 4096);
        assert!(physical_memory().is_some_and(|m| m > 0) || !Path::new("/proc/meminfo").exists());
    }
}
