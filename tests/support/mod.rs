//! Starts the built `video-ranking-service` binary on a free port with its own data directory and
//! talks to it like a client.

#![allow(dead_code)]

pub mod servers;

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The binary under test, built by cargo for this test target.
pub const BIN: &str = env!("CARGO_BIN_EXE_video-ranking-service");

/// A running service; killed when dropped.
pub struct Service {
    pub base: String,
    pub data_dir: PathBuf,
    child: Child,
    /// Every line the service printed so far is sent here.
    pub logs: mpsc::Receiver<String>,
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "vrs-blackbox-{}-{}",
        std::process::id(),
        uuid_like()
    ));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    dir
}

fn uuid_like() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Runs a command of the binary to completion with only `env` (and PATH); whether it succeeded,
/// and everything it printed.
pub fn run(args: &[&str], env: &[(&str, String)]) -> (bool, String) {
    let out = Command::new(BIN)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("NO_COLOR", "1")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap_or_else(|e| panic!("running {args:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Environment that keeps the demo small (fast start) and refreshes the snapshot every second.
pub fn small_demo_env() -> Vec<(&'static str, String)> {
    vec![
        ("DEMO_VIDEOS", "3000".into()),
        ("DEMO_CREATORS", "300".into()),
        ("DEMO_USERS", "300".into()),
        ("SNAPSHOT_REFRESH_SECS", "1".into()),
        ("RATE_LIMIT_PER_SECOND", "0".into()),
    ]
}

impl Service {
    /// Starts `serve` and waits until it listens.
    pub fn start(env: &[(&'static str, String)]) -> Service {
        Self::start_command("serve", env)
    }

    /// Starts a long-running command (`serve`, `worker`) and waits until it listens.
    pub fn start_command(command: &str, env: &[(&'static str, String)]) -> Service {
        let data_dir = temp_dir();
        let mut cmd = Command::new(BIN);
        cmd.arg(command)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("APP_HOST", "127.0.0.1")
            .env("APP_PORT", "0")
            .env("DATA_DIR", &data_dir)
            .env("LOG_FORMAT", "text")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {BIN}: {e}"));
        let (tx, logs) = mpsc::channel();
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut seen = Vec::new();
        let base = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match logs.recv_timeout(left) {
                Ok(line) => {
                    // The address ends the text line, or the JSON line's message string.
                    if let Some(addr) = line.split("listening on ").nth(1) {
                        break addr.split(['"', ' ']).next().unwrap_or(addr).to_owned();
                    }
                    seen.push(line);
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!(
                        "the service did not start listening; it printed:\n{}",
                        seen.join("\n")
                    );
                }
            }
        };
        Service {
            base,
            data_dir,
            child,
            logs,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A token for `user` from the `dev-token` subcommand, signed with this service's dev key.
    pub fn token(&self, args: &[&str]) -> String {
        let out = Command::new(BIN)
            .arg("dev-token")
            .args(args)
            .env_clear()
            .env("DATA_DIR", &self.data_dir)
            .env("LOG_FORMAT", "text")
            .output()
            .unwrap_or_else(|e| panic!("running dev-token: {e}"));
        assert!(
            out.status.success(),
            "dev-token failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// The full health report (dependency details are shown to admins only).
    pub async fn health_report(&self) -> Value {
        let token = self.token(&["--demo-user", "1", "--admin"]);
        match reqwest::Client::new()
            .get(self.url("/api/v1/health"))
            .bearer_auth(token)
            .send()
            .await
        {
            Ok(res) => res.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}
