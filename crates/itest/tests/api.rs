//! Issue 8: the API never answers in another shape (every rejection is `{"message"}` with
//! Docker's codes), refuses unknown fields and bad input before anything happens, cannot be
//! exhausted by idle clients, and stops within a second whatever is connected.

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use weft_itest::{http, Host};

/// Asserts an error answer: `status`, JSON content type, `{"message": "..."}` containing `want`.
fn error_json(got: (u16, String, String), status: u16, want: &str) {
    let (code, head, body) = got;
    assert_eq!(code, status, "{head}\n{body}");
    assert!(head.to_ascii_lowercase().contains("content-type: application/json"), "{head}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    let msg = v["message"].as_str().unwrap_or_else(|| panic!("no message: {body}"));
    assert!(msg.contains(want) && !msg.contains('\n'), "{msg:?} should contain {want:?}");
}

#[test]
fn every_rejection_is_json_and_changes_nothing() {
    let mut h = Host::new("api");
    h.start(&[]);
    let json = Some("application/json");
    let run = |body: &str| http(&h, "POST", "/containers/run", json, body.as_bytes());
    error_json(run("{not json"), 400, "");
    error_json(run(r#"{"Cmd": "not-a-list"}"#), 400, "");
    error_json(run(r#"{"Cmd": ["true"], "Privileged2": true}"#), 400, "unknown field `Privileged2`");
    error_json(http(&h, "POST", "/containers/run", None, br#"{"Cmd":["true"]}"#), 400, "Content-Type");
    error_json(http(&h, "POST", "/containers/run", json, &vec![b' '; 2 << 20]), 413, "");
    error_json(http(&h, "GET", "/no/such/route", None, b""), 404, "page not found");
    error_json(http(&h, "DELETE", "/containers/json", None, b""), 405, "method not allowed");
    error_json(http(&h, "POST", "/networks/create", json, br#"{"Name": "n", "Bogus": 1}"#), 400, "unknown field `Bogus`");
    error_json(http(&h, "POST", "/networks/x/connect", json, br#"{"Container": "c", "Extra": 1}"#), 400, "unknown field `Extra`");
    // Input that only execve would refuse is refused before anything is made.
    error_json(run(r#"{"Cmd": [""]}"#), 400, "the command is an empty string");
    error_json(run(r#"{"Cmd": ["sh", "a\u0000b"]}"#), 400, "NUL byte");
    error_json(run(r#"{"Cmd": ["true"], "Env": ["A=\u0000"]}"#), 400, "NUL byte");
    let big = format!(r#"{{"Cmd": ["true"], "Env": ["BIG={}"]}}"#, "x".repeat(200 << 10));
    error_json(run(&big), 400, "at most 128 KiB");
    error_json(run(r#"{"Cmd": []}"#), 400, "no command given");
    error_json(http(&h, "GET", "/containers/nosuch/json", None, b""), 404, "no such container: nosuch");
    assert_eq!(h.ok(&["ps", "-aq"]), "", "no record was left by a refusal");
    // And the happy path still answers JSON.
    let (code, _, body) = run(r#"{"Cmd": ["true"], "NetworkMode": "none"}"#);
    assert_eq!(code, 201, "{body}");
    assert!(serde_json::from_str::<serde_json::Value>(&body).expect("JSON")["Id"].is_string());
    h.finish();
}

/// weftd's open file descriptors.
fn fds(h: &Host) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", h.daemon_pid())).expect("fd dir").count()
}

#[test]
fn idle_connections_cannot_exhaust_weftd() {
    let mut h = Host::new("flood");
    h.start(&[]);
    let base = fds(&h);
    // One process opens more idle connections than weftd serves at once (256), and renews them
    // as weftd closes them: it gets 32 (the rest are told so, 32 at a time, or closed), and
    // other clients are served meanwhile, wave after wave.
    let sock = h.sock.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s2 = stop.clone();
    let hog = std::thread::spawn(move || {
        let mut held: Vec<UnixStream> = Vec::new();
        let (mut refused, mut closed) = (0usize, 0usize);
        while !s2.load(std::sync::atomic::Ordering::SeqCst) {
            held.retain_mut(|c| {
                c.set_nonblocking(true).expect("nonblocking");
                let mut b = [0u8; 256];
                match c.read(&mut b) {
                    Ok(0) => closed += 1,
                    Ok(n) if String::from_utf8_lossy(&b[..n]).contains("503") => refused += 1,
                    _ => return true,
                }
                false
            });
            while held.len() < 400 {
                held.push(UnixStream::connect(&sock).expect("connect"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        (refused, closed)
    });
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..5 {
        let t0 = Instant::now();
        h.ok(&["ps"]);
        assert!(t0.elapsed() < Duration::from_secs(2), "another client waited {:?}", t0.elapsed());
        assert!(fds(&h) <= base + 32 + 32 + 8, "weftd holds {} descriptors for one client", fds(&h) - base);
        std::thread::sleep(Duration::from_millis(600));
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (refused, closed) = hog.join().expect("hog");
    // Idle ones are closed after a second of silence; the ones over the limit are told so or closed.
    assert!(refused > 0 && closed > 400, "refused {refused}, closed {closed}");
    weft_itest::eventually("weftd's descriptors back to where they were", || fds(&h) <= base + 2);
    h.finish();
}

#[test]
fn sigterm_stops_weftd_within_a_second_with_streaming_clients() {
    let mut h = Host::new("term");
    h.start(&[]);
    h.run_d("c1", &[], &["sh", "-c", "while true; do echo tick; sleep 0.2; done"]);
    let spawn = |args: &[&str]| h.cli().args(args).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().expect("client");
    let follower = spawn(&["logs", "-f", "c1"]);
    let waiter = spawn(&["wait", "c1"]);
    std::thread::sleep(Duration::from_millis(500));
    let t0 = Instant::now();
    h.stop_daemon();
    let took = t0.elapsed();
    assert!(took < Duration::from_millis(1500), "weftd took {took:?} to stop");
    // The log stream ended cleanly (what was streamed, then end of stream); the waiter was told.
    let f = follower.wait_with_output().expect("logs -f");
    assert!(f.status.success() && String::from_utf8_lossy(&f.stdout).contains("tick"), "{f:?}");
    let w = waiter.wait_with_output().expect("wait");
    assert!(!w.status.success() && String::from_utf8_lossy(&w.stderr).contains("shutting down"), "{w:?}");
    // A restart right after works, and the container kept running.
    h.start(&[]);
    assert_eq!(h.ok(&["inspect", "-f", "{{.State.Running}}", "c1"]), "true");
    h.finish();
}
