//! Credentials in repository URLs: used for HTTP(S), never shown, never stored.
//!
//! A small HTTP server on the loopback interface serves a bare repository over git's
//! "dumb" HTTP protocol behind Basic authentication.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Origin, git};
use warden_git::{ErrorKind, GitError, RepoCache, redact_url};

const USER: &str = "a@b";
const PASSWORD: &str = "p@ss:w/rd-0123456789";
/// The same credentials, percent-encoded as they must be in a URL.
const USERINFO: &str = "a%40b:p%40ss%3Aw%2Frd-0123456789";

/// Serves `root` over HTTP on 127.0.0.1; answers 503 to the first `fail_first`
/// requests, then 401 unless the request carries Basic credentials for
/// `USER`/`PASSWORD`. Returns the port and a log of requests (`<path> <authorised?>`).
fn serve(root: PathBuf, fail_first: usize) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let log = Arc::new(Mutex::new(Vec::new()));
    let expected = format!("Basic {}", base64(format!("{USER}:{PASSWORD}").as_bytes()));
    let server_log = log.clone();
    std::thread::spawn(move || {
        // Bounded: a test needs a few dozen requests at most.
        for stream in listener.incoming().take(1000) {
            let Ok(stream) = stream else { continue };
            let (root, expected, log) = (root.clone(), expected.clone(), server_log.clone());
            let fail = log.lock().unwrap().len() < fail_first;
            std::thread::spawn(move || handle(stream, &root, &expected, &log, fail));
        }
    });
    (port, log)
}

fn handle(
    mut stream: TcpStream,
    root: &Path,
    expected: &str,
    log: &Mutex<Vec<String>>,
    fail: bool,
) {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut authorised = false;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.trim_end().split_once(':')
            && name.eq_ignore_ascii_case("authorization")
        {
            authorised = value.trim() == expected;
        }
    }
    let target = request_line.split(' ').nth(1).unwrap_or("/").to_owned();
    let path = target
        .split('?')
        .next()
        .unwrap()
        .trim_start_matches('/')
        .to_owned();
    if fail {
        log.lock().unwrap().push(format!("{path} 503"));
        let _ = stream.write_all(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        return;
    }
    log.lock().unwrap().push(format!("{path} {authorised}"));
    let response = if !authorised {
        b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()
    } else {
        let file = root.join(&path);
        match (path.contains(".."), std::fs::read(&file)) {
            (false, Ok(body)) => {
                let mut r = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                r.extend(body);
                r
            }
            _ => {
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()
            }
        }
    };
    let _ = stream.write_all(&response);
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// An origin with one commit on main, prepared for dumb HTTP.
fn served_origin() -> (Origin, String, u16, Arc<Mutex<Vec<String>>>) {
    served_origin_failing_first(0)
}

fn served_origin_failing_first(
    fail_first: usize,
) -> (Origin, String, u16, Arc<Mutex<Vec<String>>>) {
    let origin = Origin::new();
    let head = origin.commit(&[("project.yaml", "version: '3.0'\n")], "first");
    origin.push("main");
    git(&origin.bare, &["update-server-info"]);
    let (port, log) = serve(origin.tmp.path().to_owned(), fail_first);
    (origin, head, port, log)
}

fn assert_no_secret(text: &str) {
    for secret in [PASSWORD, USERINFO, "p%40ss", "w/rd-0123456789"] {
        assert!(!text.contains(secret), "{secret:?} leaked in: {text}");
    }
}

/// Every file under `dir`, read as bytes, must not contain the password.
fn assert_no_secret_on_disk(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            assert_no_secret_on_disk(&path);
        } else if let Ok(bytes) = std::fs::read(&path) {
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                !text.contains(PASSWORD),
                "password stored in {}",
                path.display()
            );
        }
    }
}

#[test]
fn credentials_in_an_http_url_are_used_but_neither_stored_nor_shown() {
    let (_origin, head, port, log) = served_origin();
    let dir = tempfile::tempdir().unwrap();
    let cache = RepoCache::new(dir.path());
    let url = format!("http://{USERINFO}@127.0.0.1:{port}/origin.git");

    let repo = cache.ensure(&url).unwrap();
    assert_eq!(repo.branch_head("main").unwrap().as_str(), head);
    assert_eq!(
        repo.repo(),
        format!("http://***@127.0.0.1:{port}/origin.git")
    );
    assert_no_secret(&format!("{repo:?}"));
    // Git first asked without credentials, got 401, and our helper answered.
    let requests = log.lock().unwrap().clone();
    assert!(
        requests.iter().any(|r| r.ends_with(" false")),
        "{requests:?}"
    );
    assert!(
        requests.iter().any(|r| r.ends_with(" true")),
        "{requests:?}"
    );
    assert_no_secret_on_disk(dir.path());

    // A rotated token reaches the same cache entry.
    let rotated = format!("http://a%40b:other-token@127.0.0.1:{port}/origin.git");
    assert_eq!(cache.path_for(&rotated).unwrap(), repo.path());

    // A later fetch with the same URL works too, and still leaves nothing on disk.
    cache.ensure(&url).unwrap();
    assert_no_secret_on_disk(dir.path());

    // The branch errors do not show the URL at all; `repo()` shows it redacted.
    let err = repo.branch_head("nope").unwrap_err();
    assert_eq!(err.to_string(), "Could not find branch 'nope'");
    assert_no_secret(err.repo().unwrap());
}

#[test]
fn wrong_credentials_fail_without_showing_them() {
    let (_origin, _head, port, _log) = served_origin();
    let dir = tempfile::tempdir().unwrap();
    let cache = RepoCache::new(dir.path());
    let url = format!("http://a%40b:wrong-{USERINFO}@127.0.0.1:{port}/origin.git");
    let err = cache.ensure(&url).unwrap_err();
    let message = err.to_string();
    assert_no_secret(&message);
    assert_no_secret(&format!("{err:?}"));
    assert!(
        message.contains(&format!("http://***@127.0.0.1:{port}/origin.git")),
        "{message}"
    );
    assert_eq!(err.kind(), ErrorKind::Failed, "{message}");

    // No credentials at all: the same, and no prompt hangs the call.
    let err = cache
        .ensure(&format!("http://127.0.0.1:{port}/origin.git"))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Failed, "{err}");
}

#[test]
fn a_url_with_credentials_never_appears_in_an_error_message() {
    let dir = tempfile::tempdir().unwrap();
    let cache = RepoCache::new(dir.path());
    // Nothing listens on port 1; a missing local repository; a malformed URL; a
    // repository missing on a live server.
    let (_origin, _head, port, _log) = served_origin();
    for url in [
        format!("https://{USERINFO}@127.0.0.1:1/org/repo"),
        format!("http://{USERINFO}@127.0.0.1:{port}/missing.git"),
        format!("file://{USERINFO}@/no/such/repo"),
        format!("ssh+git://{USERINFO}@"),
        format!("{USERINFO}@relative/path"),
    ] {
        let started = Instant::now();
        let err = cache.ensure(&url).unwrap_err();
        eprintln!("{:?}: {err}", started.elapsed());
        assert_no_secret(&err.to_string());
        assert_no_secret(&format!("{err:?}"));
        if let Some(repo) = err.repo() {
            assert_no_secret(repo);
        }
    }
    assert_no_secret(&redact_url(&format!(
        "https://{USERINFO}@github.com/org/repo"
    )));
}

#[test]
fn a_stalled_server_hits_the_fetch_timeout() {
    // Accepts connections and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().take(20) {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 1024];
            let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
            let _ = stream.read(&mut buf);
            held.push(stream);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let cache = RepoCache::new(dir.path()).with_fetch_timeout(Duration::from_secs(2));
    let started = Instant::now();
    let err = cache
        .ensure(&format!("http://{USERINFO}@127.0.0.1:{port}/slow.git"))
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(matches!(err, GitError::Timeout { .. }), "{err}");
    assert_eq!(err.kind(), ErrorKind::Failed);
    assert_no_secret(&err.to_string());
    // Generous bound: only proves the deadline fired and the helpers were killed.
    assert!(elapsed < Duration::from_secs(30), "took {elapsed:?}");
    // No partial clone is left behind.
    let left: Vec<_> = common::entries(dir.path())
        .into_iter()
        .filter(|e| !e.ends_with(".lock"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_fetch_is_retried_after_a_transient_failure() {
    let (_origin, head, port, log) = served_origin_failing_first(2);
    let dir = tempfile::tempdir().unwrap();
    let cache = RepoCache::new(dir.path());
    let url = format!("http://{USERINFO}@127.0.0.1:{port}/origin.git");
    let repo = cache.ensure(&url).unwrap();
    assert_eq!(repo.branch_head("main").unwrap().as_str(), head);
    let requests = log.lock().unwrap().clone();
    assert_eq!(
        requests.iter().filter(|r| r.ends_with(" 503")).count(),
        2,
        "{requests:?}"
    );
}
