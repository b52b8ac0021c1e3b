//! A real SMTP server for tests: Python's aiosmtpd (installed by scripts/setup),
//! writing every message it accepts into a Maildir.
//!
//! Shared by the test binaries `senders`, `api` and `multinode` through `#[path]`
//! includes, so there is one copy of the fixture; each binary uses only part of it.
#![allow(dead_code)]

use std::io;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// An aiosmtpd process writing every message it accepts into a Maildir; killed on drop.
#[derive(Debug)]
pub struct SmtpServer {
    child: Child,
    pub port: u16,
    pub maildir: tempfile::TempDir,
}

impl SmtpServer {
    /// The `smtp_url` that reaches this server (plain text on loopback).
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}?tls=none", self.port)
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The first interpreter that can import aiosmtpd. `/usr/bin/python3` is tried too
/// because Debian's python3-aiosmtpd lands there, while `python3` on PATH may be
/// another installation (pyenv, a virtualenv) that cannot see it.
pub fn python_with_aiosmtpd() -> String {
    for python in ["python3", "/usr/bin/python3"] {
        let ok = Command::new(python)
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return python.to_owned();
        }
    }
    panic!(
        "`python3 -m aiosmtpd` is not available (neither python3 nor /usr/bin/python3 can \
         import aiosmtpd); run scripts/setup, which installs python3-aiosmtpd"
    );
}

pub fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    listener.local_addr().unwrap().port()
}

pub fn start_smtp_server() -> SmtpServer {
    let python = python_with_aiosmtpd();
    let maildir = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = Command::new(&python)
        .args(["-m", "aiosmtpd", "-n", "-l"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["-c", "aiosmtpd.handlers.Mailbox"])
        .arg(maildir.path().join("Maildir"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("could not start {python} -m aiosmtpd: {e}; run scripts/setup"));
    let mut server = SmtpServer { child, port, maildir };
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            let mut stderr = String::new();
            if let Some(mut pipe) = server.child.stderr.take() {
                let _ = io::Read::read_to_string(&mut pipe, &mut stderr);
            }
            panic!("aiosmtpd exited at start ({status}): {stderr}\nrun scripts/setup");
        }
        if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return server;
        }
        assert!(Instant::now() < deadline, "aiosmtpd did not accept connections on port {port} within 15 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The files in `Maildir/new` right now, as (path, raw message) pairs.
pub fn mail_files(maildir: &Path) -> Vec<(PathBuf, String)> {
    let new = maildir.join("Maildir").join("new");
    let files: Vec<PathBuf> =
        std::fs::read_dir(&new).map(|dir| dir.map(|e| e.unwrap().path()).collect()).unwrap_or_default();
    files.into_iter().map(|f| (f.clone(), std::fs::read_to_string(&f).unwrap())).collect()
}

/// The messages in `Maildir/new`, waiting briefly for the first one to be written.
pub fn delivered(maildir: &Path) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let files = mail_files(maildir);
        if !files.is_empty() || Instant::now() > deadline {
            return files.into_iter().map(|(_, text)| text).collect();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The value of the first header called `name` (unfolded), from a raw message.
pub fn header_value<'a>(message: &'a str, name: &str) -> Option<&'a str> {
    let head = message.split("\n\n").next()?;
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}
