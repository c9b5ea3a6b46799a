//! Servers a test owns, so it can stop and restart them: a Redis server and a PostgreSQL cluster
//! on free loopback ports, from the binaries the test harness found (TEST_REDIS_SERVER_BIN,
//! TEST_PG_BIN_DIR). Unavailable binaries skip the test, except under CI=true where they fail it.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `None` (skip) when a required tool is missing outside CI; a panic under CI=true.
pub fn require<T>(what: &str, found: Option<T>) -> Option<T> {
    if found.is_none() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{what} is not available and CI=true: a missing service is a failure");
        }
        eprintln!("skipping: {what} is not available (run the suite with scripts/test.sh)");
    }
    found
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

fn wait_until(what: &str, within: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ready() {
        assert!(
            Instant::now() < deadline,
            "{what} did not come up within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn tcp_up(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// A redis-server process of the test's own.
pub struct RedisServer {
    bin: PathBuf,
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start() -> Option<Self> {
        let bin = std::env::var_os("TEST_REDIS_SERVER_BIN")
            .map(PathBuf::from)
            .or_else(|| which("redis-server"));
        let bin = require("redis-server", bin)?;
        let mut server = Self {
            bin,
            port: free_port(),
            child: None,
        };
        server.restart();
        Some(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        let child = Command::new(&self.bin)
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.bin.display()));
        self.child = Some(child);
        let port = self.port;
        wait_until("redis-server", Duration::from_secs(10), || tcp_up(port));
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A PostgreSQL cluster of the test's own (initdb + pg_ctl; run as the `postgres` user when the
/// tests run as root, since PostgreSQL refuses root).
pub struct PostgresServer {
    bin: PathBuf,
    dir: PathBuf,
    pub port: u16,
    as_postgres: bool,
}

impl PostgresServer {
    pub fn start() -> Option<Self> {
        let bin = std::env::var_os("TEST_PG_BIN_DIR")
            .map(PathBuf::from)
            .or_else(|| {
                let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
                    .ok()?
                    .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
                    .filter(|p| p.join("initdb").exists())
                    .collect();
                dirs.sort();
                dirs.pop()
            });
        let bin = require("PostgreSQL server binaries", bin)?;
        let dir =
            std::env::temp_dir().join(format!("vrs-pg-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        let as_postgres = is_root();
        if as_postgres {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status();
            assert!(status.is_ok_and(|s| s.success()), "chown {}", dir.display());
        }
        let server = Self {
            bin,
            dir,
            port: free_port(),
            as_postgres,
        };
        let data = server.dir.join("data");
        let out = server
            .command("initdb")
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .output()
            .unwrap_or_else(|e| panic!("initdb: {e}"));
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        server.restart();
        Some(server)
    }

    fn command(&self, tool: &str) -> Command {
        let path = self.bin.join(tool);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn stop(&self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    pub fn restart(&self) {
        self.stop();
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .args(["-w", "-o", &opts, "start"])
            .output()
            .unwrap_or_else(|e| panic!("pg_ctl start: {e}"));
        assert!(
            out.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = self.port;
        wait_until("PostgreSQL", Duration::from_secs(20), || tcp_up(port));
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
