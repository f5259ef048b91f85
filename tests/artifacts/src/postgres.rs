//! A real PostgreSQL server for the tests and the benchmark (Debian's package, installed by
//! `scripts/install-postgres.sh`): a throwaway cluster in a temporary directory on a free
//! 127.0.0.1 port, with password authentication, stopped and removed on drop.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The superuser the tests connect as.
pub const USER: &str = "spate";
/// Its password (the pipelines read it from the environment variable [`PASSWORD_VAR`]).
pub const PASSWORD: &str = "spate-test-password";
/// The environment variable the test pipelines take the password from.
pub const PASSWORD_VAR: &str = "SPATE_TEST_PG_PASSWORD";

/// PostgreSQL's program directory, installed once per test process.
fn bin_dir() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/install-postgres.sh");
        let output = Command::new(&script)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        assert!(
            output.status.success(),
            "{} failed:\n{}",
            script.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        let out = String::from_utf8_lossy(&output.stdout);
        PathBuf::from(
            out.trim()
                .lines()
                .last()
                .expect("the script prints the path"),
        )
    })
    .clone()
}

/// Whether this process runs as root: PostgreSQL refuses to, so its programs then run as the
/// `postgres` user the Debian package creates.
fn as_root() -> bool {
    let out = Command::new("id").arg("-u").output().expect("id -u");
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// A PostgreSQL program, run as the `postgres` user when the tests run as root.
fn program(name: &str) -> Command {
    let path = bin_dir().join(name);
    let mut command = if as_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(path);
        command
    } else {
        Command::new(path)
    };
    // Somewhere the postgres user may read.
    command.current_dir("/");
    command
}

fn succeed(command: &mut Command, what: &str) {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The user [`Server::enable_tls`] adds, accepted only over TLS.
pub const TLS_USER: &str = "spate_tls";

/// Writes a self-signed certificate for `host` (and 127.0.0.1) and its key, with the
/// `openssl` program: the key readable by its owner only, as PostgreSQL wants.
pub fn self_signed(cert: &Path, key: &Path, host: &str) {
    succeed(
        Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args(["-subj", &format!("/CN={host}")])
            .args([
                "-addext",
                &format!("subjectAltName=DNS:{host},IP:127.0.0.1"),
            ])
            .arg("-keyout")
            .arg(key)
            .arg("-out")
            .arg(cert),
        "openssl req",
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(key, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// A running throwaway server.
pub struct Server {
    dir: tempfile::TempDir,
    port: u16,
}

impl Server {
    /// Initialises a cluster in a temporary directory and starts it on a free port.
    pub fn start() -> Server {
        Server::start_in(&std::env::temp_dir())
    }

    /// [`Server::start`] with the temporary directory under `parent` (a benchmark puts it on
    /// a memory file system, where no disk write-back stalls the server).
    pub fn start_in(parent: &Path) -> Server {
        let dir = tempfile::tempdir_in(parent).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server = Server { dir, port };
        std::fs::write(server.path("password"), PASSWORD).unwrap();
        if as_root() {
            succeed(
                Command::new("chown")
                    .args(["-R", "postgres:"])
                    .arg(server.dir.path()),
                "chown the test cluster's directory",
            );
        }
        succeed(
            program("initdb")
                .args([
                    "--auth=scram-sha-256",
                    "--username",
                    USER,
                    "--no-sync",
                    "--pwfile",
                ])
                .arg(server.path("password"))
                .arg("-D")
                .arg(server.path("data")),
            "initdb",
        );
        server.run();
        server
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Starts the server process (waiting until it takes connections).
    pub fn run(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off \
             -c synchronous_commit=off -c full_page_writes=off",
            self.port,
            self.dir.path().display()
        );
        succeed(
            program("pg_ctl")
                .arg("-D")
                .arg(self.path("data"))
                .arg("-l")
                .arg(self.path("server.log"))
                .args(["-w", "-t", "60", "-o", &options, "start"]),
            "pg_ctl start",
        );
    }

    /// Stops the server (`fast`: open connections are ended, as in a restart).
    pub fn stop(&self) {
        let _ = program("pg_ctl")
            .arg("-D")
            .arg(self.path("data"))
            .args(["-m", "fast", "-w", "stop"])
            .output();
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The connection url, without the password.
    pub fn url(&self) -> String {
        format!("postgresql://{USER}@127.0.0.1:{}/postgres", self.port)
    }

    /// A client connection, for the tests' own queries.
    pub fn client(&self) -> postgres::Client {
        let mut config: postgres::Config = self.url().parse().unwrap();
        config.password(PASSWORD);
        config.connect(postgres::NoTls).unwrap()
    }

    /// Runs SQL statements.
    pub fn execute(&self, sql: &str) {
        self.client()
            .batch_execute(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Turns TLS on and adds the user [`TLS_USER`] (same password), whom the server accepts
    /// only over TLS. The server's certificate is self-signed for `localhost` and 127.0.0.1;
    /// returns its file, the CA a client must trust.
    pub fn enable_tls(&self) -> PathBuf {
        let (cert, key) = (self.path("data/server.crt"), self.path("data/server.key"));
        self_signed(&cert, &key, "localhost");
        if as_root() {
            succeed(
                Command::new("chown").arg("postgres:").arg(&cert).arg(&key),
                "chown the server's certificate",
            );
        }
        let hba = self.path("data/pg_hba.conf");
        let rules = std::fs::read_to_string(&hba).unwrap();
        std::fs::write(
            &hba,
            format!(
                "hostssl all {TLS_USER} 127.0.0.1/32 scram-sha-256\n\
                 hostnossl all {TLS_USER} 127.0.0.1/32 reject\n{rules}"
            ),
        )
        .unwrap();
        // One at a time: ALTER SYSTEM may not run in the transaction a batch of statements is.
        for sql in [
            "ALTER SYSTEM SET ssl = on".to_owned(),
            format!("ALTER SYSTEM SET ssl_cert_file = '{}'", cert.display()),
            format!("ALTER SYSTEM SET ssl_key_file = '{}'", key.display()),
            format!("CREATE ROLE {TLS_USER} LOGIN SUPERUSER PASSWORD '{PASSWORD}'"),
            "SELECT pg_reload_conf()".to_owned(),
        ] {
            self.execute(&sql);
        }
        // The reload is asynchronous: wait until the server speaks TLS.
        for _ in 0..100 {
            let on: String = self.client().query_one("SHOW ssl", &[]).unwrap().get(0);
            if on == "on" {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        cert
    }

    /// What the server logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("server.log")).unwrap_or_default()
    }

    /// The directory of the cluster.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = program("pg_ctl")
            .arg("-D")
            .arg(self.path("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}
