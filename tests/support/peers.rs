//! Real peer processes a test starts on loopback (nginx, HAProxy, a Python
//! server), stopped when dropped, and the certificates they are given (a CA
//! and leaves it signs, made with `openssl`).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process stopped on drop, also when a test fails: SIGTERM first (so
/// that nginx's master takes its workers with it), SIGKILL after 5 s.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until something accepts on 127.0.0.1:`port` (10 s at most).
pub fn wait_port(port: u16) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "nothing listens on {port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// nginx with `servers` (its `server` blocks) in its own prefix `dir`.
pub fn nginx(dir: &Path, servers: &str) -> Killed {
    let user = if unsafe { libc::geteuid() } == 0 {
        "user root;\n"
    } else {
        ""
    };
    let d = dir.display();
    let conf = format!(
        "{user}worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/nginx-error.log;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n access_log off;\n client_body_temp_path {d};\n proxy_temp_path {d};\n\
         fastcgi_temp_path {d};\n uwsgi_temp_path {d};\n scgi_temp_path {d};\n{servers}\n}}\n"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let child = Command::new("nginx")
        .args(["-p", &d.to_string(), "-c", path.to_str().unwrap()])
        .args(["-g", "daemon off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx (vm-lab/install-deps installs it)");
    Killed(child)
}

/// Runs `openssl` in `dir` (this process's own directory when `None`); its
/// standard output. A failure fails the test with openssl's own words.
pub fn openssl_in(dir: Option<&Path>, args: &[&str]) -> String {
    let mut c = Command::new("openssl");
    if let Some(d) = dir {
        c.current_dir(d);
    }
    let out = c
        .args(args)
        .output()
        .expect("openssl (vm-lab/install-deps installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn openssl(args: &[&str]) {
    openssl_in(None, args);
}

/// A CA (`{ca}.pem`, `{ca}.key`, ECDSA P-256) in `dir`, made once per name.
pub fn make_ca(dir: &Path, ca: &str) {
    let (cert, key) = (dir.join(format!("{ca}.pem")), dir.join(format!("{ca}.key")));
    if cert.exists() {
        return;
    }
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "30",
        "-subj",
        &format!("/CN={ca}"),
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign",
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        cert.to_str().unwrap(),
    ]);
}

/// A certificate for `name` (its CN and DNS name) signed by CA `ca`, for
/// `usage` (`serverAuth`, `clientAuth`): (cert, key) paths in `dir`.
pub fn make_leaf(dir: &Path, ca: &str, name: &str, usage: &str) -> (PathBuf, PathBuf) {
    make_ca(dir, ca);
    let base = dir.join(name);
    let (cert, key, csr, ext) = (
        base.with_extension("pem"),
        base.with_extension("key"),
        base.with_extension("csr"),
        base.with_extension("ext"),
    );
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        &format!("/CN={name}"),
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        csr.to_str().unwrap(),
    ]);
    std::fs::write(
        &ext,
        format!("subjectAltName=DNS:{name}\nextendedKeyUsage={usage}\nbasicConstraints=CA:FALSE\n"),
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        csr.to_str().unwrap(),
        "-days",
        "30",
        "-CA",
        dir.join(format!("{ca}.pem")).to_str().unwrap(),
        "-CAkey",
        dir.join(format!("{ca}.key")).to_str().unwrap(),
        "-CAcreateserial",
        "-extfile",
        ext.to_str().unwrap(),
        "-out",
        cert.to_str().unwrap(),
    ]);
    (cert, key)
}
