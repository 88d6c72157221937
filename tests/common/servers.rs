//! Real PostgreSQL and Redis servers on loopback for the database integration tests: one
//! throwaway instance per test (own port, own data directory), or the servers `DATABASE_URL`
//! and `REDIS_URL` point at. `scripts/install-test-servers.sh` installs Debian's packages;
//! `TEST_PG_BINDIR` names PostgreSQL's program directory (else the newest under
//! `/usr/lib/postgresql`).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const START_LIMIT: Duration = Duration::from_secs(60);

// Its own, not the collector module's: the database bench includes this file alone.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free loopback port")
}

fn scratch_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "service-telemetry-{what}-{}-{}",
        std::process::id(),
        free_port()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// PostgreSQL refuses to run as root: as root, its programs run as the `postgres` user that
/// Debian's package creates.
fn postgres_user() -> Option<(u32, u32)> {
    let me = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&me.stdout).trim() != "0" {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.first() == Some(&"postgres")).then(|| {
            (
                fields[2].parse().expect("uid"),
                fields[3].parse().expect("gid"),
            )
        })
    })
}

fn pg_bindir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TEST_PG_BINDIR") {
        return PathBuf::from(dir);
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path().join("bin"))
                .filter(|bin| bin.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    dirs.sort_by_key(|d| {
        d.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
    });
    dirs.pop().expect(
        "PostgreSQL not installed: run scripts/install-test-servers.sh (or set DATABASE_URL)",
    )
}

fn as_server_user(program: &Path, user: Option<(u32, u32)>) -> Command {
    let mut cmd = Command::new(program);
    if let Some((uid, gid)) = user {
        use std::os::unix::process::CommandExt as _;
        cmd.uid(uid).gid(gid);
    }
    cmd
}

/// `scheme://[user[:password]@]host[:port][/path]` as host, port (else `default_port`) and
/// the path after its `/`, for servers given by `DATABASE_URL` and `REDIS_URL`.
fn split_server_url(url: &str, default_port: u16) -> (String, u16, &str) {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let (authority, path) = after_scheme.split_once('/').unwrap_or((after_scheme, ""));
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    match host_port.rsplit_once(':') {
        Some((host, port)) => (host.to_owned(), port.parse().unwrap_or(default_port), path),
        None => (host_port.to_owned(), default_port, path),
    }
}

pub struct Postgres {
    pub url: String,
    /// `db.namespace`, `server.address`, `server.port` as the spans should show them.
    pub database: String,
    pub host: String,
    pub port: u16,
    child: Option<Child>,
    dir: Option<PathBuf>,
}

impl Postgres {
    pub fn start() -> Postgres {
        if let Ok(url) = std::env::var("DATABASE_URL") {
            return Postgres::reuse(url);
        }
        let bin = pg_bindir();
        let user = postgres_user();
        let dir = scratch_dir("postgres");
        let data = dir.join("data");
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).expect("chown scratch dir");
        }
        let init = as_server_user(&bin.join("initdb"), user)
            .args([
                "--auth=trust",
                "--username=app",
                "--encoding=UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&data)
            .output()
            .expect("run initdb");
        assert!(
            init.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        let port = free_port();
        let log = std::fs::File::create(dir.join("postgres.log")).expect("log file");
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.join("postgres.log"), Some(uid), Some(gid))
                .expect("chown log");
        }
        let child = as_server_user(&bin.join("postgres"), user)
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(&dir)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "log_min_messages=warning",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start postgres");
        let mut server = Postgres {
            url: format!("postgres://app@127.0.0.1:{port}/shop"),
            database: "shop".into(),
            host: "127.0.0.1".into(),
            port,
            child: Some(child),
            dir: Some(dir.clone()),
        };
        // Ready when it accepts connections; then a database of the tests' own.
        let deadline = Instant::now() + START_LIMIT;
        loop {
            let ready = Command::new(bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                break;
            }
            if let Some(status) = server
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "postgres exited with {status}: {}",
                    std::fs::read_to_string(dir.join("postgres.log")).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "postgres not ready within {START_LIMIT:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let created = Command::new(bin.join("createdb"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "app",
                "shop",
            ])
            .output()
            .expect("run createdb");
        assert!(
            created.status.success(),
            "createdb failed: {}",
            String::from_utf8_lossy(&created.stderr)
        );
        server
    }

    fn reuse(url: String) -> Postgres {
        let (host, port, path) = split_server_url(&url, 5432);
        let database = path.split('?').next().unwrap_or("").to_owned();
        Postgres {
            url,
            database,
            host,
            port,
            child: None,
            dir: None,
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

pub struct Redis {
    pub url: String,
    pub host: String,
    pub port: u16,
    child: Option<Child>,
}

/// Sends `PING`; true on `+PONG`.
fn redis_pings(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}

impl Redis {
    pub fn start() -> Redis {
        if let Ok(url) = std::env::var("REDIS_URL") {
            let (host, port, _) = split_server_url(&url, 6379);
            return Redis {
                url,
                host,
                port,
                child: None,
            };
        }
        let port = free_port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server (run scripts/install-test-servers.sh, or set REDIS_URL)");
        let mut server = Redis {
            url: format!("redis://127.0.0.1:{port}/"),
            host: "127.0.0.1".into(),
            port,
            child: Some(child),
        };
        let deadline = Instant::now() + START_LIMIT;
        while !redis_pings(port) {
            if let Some(status) = server
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("redis-server exited with {status}");
            }
            assert!(
                Instant::now() < deadline,
                "redis-server not ready within {START_LIMIT:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
