//! A real `nats-server` for tests: loopback only, a free port, 8 MB payloads (blocks), stopped
//! on drop. Can be killed and started again on the same port to test reconnection.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct NatsServer {
    pub port: u16,
    config: PathBuf,
    /// The environment the configuration refers to (`$NAME`).
    env: Vec<(String, String)>,
    child: Option<Child>,
    /// Holds the configuration file for as long as the server lives.
    _workdir: tempfile::TempDir,
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind loopback")
        .local_addr()
        .expect("local addr")
        .port()
}

fn nats_server_binary() -> PathBuf {
    // `cargo xtask setup` installs it next to cargo.
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cargo")
        });
    let installed = home.join("bin/nats-server");
    if installed.exists() {
        installed
    } else {
        PathBuf::from("nats-server")
    }
}

impl NatsServer {
    /// Starts a server on a free port and waits until it accepts connections.
    pub fn start() -> NatsServer {
        NatsServer::on_port(free_port())
    }

    /// A server that will listen on `port` once [`NatsServer::resume`] is called.
    pub fn stopped_on(port: u16) -> NatsServer {
        NatsServer::configured(port, "max_payload: 8MB")
    }

    /// A server on a free port with `config` (nats-server configuration lines) added.
    pub fn start_with(config: &str) -> NatsServer {
        let mut server = NatsServer::configured(free_port(), config);
        server.resume();
        server
    }

    fn configured(port: u16, config: &str) -> NatsServer {
        let workdir = tempfile::tempdir().expect("temp dir");
        let path = workdir.path().join("nats.conf");
        std::fs::write(&path, format!("listen: 127.0.0.1:{port}\n{config}\n"))
            .expect("write config");
        NatsServer {
            port,
            config: path,
            env: Vec::new(),
            child: None,
            _workdir: workdir,
        }
    }

    /// A server run with a configuration file as shipped (its client port replaced by a free
    /// one) and the environment variables it refers to.
    pub fn start_shipped(config: &std::path::Path, env: &[(&str, &str)]) -> NatsServer {
        let mut server = NatsServer {
            port: free_port(),
            config: config.to_path_buf(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            child: None,
            _workdir: tempfile::tempdir().expect("temp dir"),
        };
        server.resume();
        server
    }

    pub fn on_port(port: u16) -> NatsServer {
        let mut server = NatsServer::stopped_on(port);
        server.resume();
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port and waits until it accepts connections.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new(nats_server_binary())
            .arg("--config")
            .arg(&self.config)
            .args(["--port", &self.port.to_string()])
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server (run `cargo xtask setup`)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not come up on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills the server abruptly (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}
