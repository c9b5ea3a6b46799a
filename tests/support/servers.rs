//! Servers a test owns, so it can stop and restart them: a Redis server, a PostgreSQL cluster and
//! a ClickHouse server on free loopback ports, from the binaries the test harness found
//! (TEST_REDIS_SERVER_BIN, TEST_PG_BIN_DIR, `clickhouse-server` on the PATH). Unavailable binaries
//! skip the test, except under CI=true where they fail it.

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

/// A clickhouse-server process of the test's own, which the test may pause (SIGSTOP).
pub struct ClickHouseServer {
    dir: PathBuf,
    pub port: u16,
    child: Child,
}

impl ClickHouseServer {
    pub fn start() -> Option<Self> {
        let bin = require("clickhouse-server", which("clickhouse-server"))?;
        let dir =
            std::env::temp_dir().join(format!("vrs-ch-{}-{}", std::process::id(), free_port()));
        for sub in ["data", "tmp", "user_files", "format_schemas"] {
            std::fs::create_dir_all(dir.join(sub))
                .unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        }
        let (port, http_port) = (free_port(), free_port());
        let d = dir.display();
        std::fs::write(
            dir.join("users.xml"),
            "<yandex><profiles><default/></profiles><quotas><default/></quotas><users><default>\
             <password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks>\
             <profile>default</profile><quota>default</quota></default></users></yandex>",
        )
        .unwrap_or_else(|e| panic!("users.xml: {e}"));
        std::fs::write(
            dir.join("config.xml"),
            format!(
                "<yandex><logger><level>warning</level><log>{d}/server.log</log>\
                 <errorlog>{d}/error.log</errorlog></logger>\
                 <listen_host>127.0.0.1</listen_host><http_port>{http_port}</http_port>\
                 <tcp_port>{port}</tcp_port><path>{d}/data/</path><tmp_path>{d}/tmp/</tmp_path>\
                 <user_files_path>{d}/user_files/</user_files_path>\
                 <format_schema_path>{d}/format_schemas/</format_schema_path>\
                 <users_config>{d}/users.xml</users_config><default_profile>default</default_profile>\
                 <default_database>default</default_database><timezone>UTC</timezone>\
                 <mark_cache_size>67108864</mark_cache_size></yandex>"
            ),
        )
        .unwrap_or_else(|e| panic!("config.xml: {e}"));
        let child = Command::new(bin)
            .arg(format!("--config-file={d}/config.xml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting clickhouse-server: {e}"));
        let server = Self { dir, port, child };
        wait_until("ClickHouse", Duration::from_secs(30), || tcp_up(port));
        Some(server)
    }

    /// `tcp://127.0.0.1:PORT`, the native protocol.
    pub fn url(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    /// Pauses (SIGSTOP) or resumes (SIGCONT) the server.
    pub fn pause(&self, paused: bool) {
        let signal = if paused { "-STOP" } else { "-CONT" };
        assert!(self.signal(signal), "kill {signal}");
    }

    fn signal(&self, signal: &str) -> bool {
        Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for ClickHouseServer {
    fn drop(&mut self) {
        self.signal("-CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
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
