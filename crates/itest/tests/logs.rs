//! Issue 18: logs that cannot fill the disk. A container writing without pause keeps its log
//! under its `--log-opt` cap while followers keep their place (numbered lines, in order, none
//! twice); without a cap the same writer fills a small disk, and then `rm -f` still works.

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use weft_itest::{text, Host};

/// A writer of numbered lines, without pause.
const WRITER: &[&str] = &["sh", "-c", "i=0; while true; i=$((i+1)); do echo line-$i; done"];

fn log_path(h: &Host, name: &str) -> String {
    h.ok(&["inspect", "-f", "{{.LogPath}}", name])
}

/// (bytes written so far, bytes the file holds on disk)
fn log_size(path: &str) -> (u64, u64) {
    let m = std::fs::metadata(path).expect("log");
    (m.len(), m.blocks() * 512)
}

/// The numbers of the whole `line-N` lines of `out`: a line without its newline (the last, cut
/// where the reader stopped: "line-12" of "line-1234") is not counted.
fn numbers(out: &str) -> Vec<u64> {
    out.split_inclusive('\n').filter_map(|l| l.strip_suffix('\n')?.strip_prefix("line-")?.parse().ok()).collect()
}

#[test]
fn a_flooding_container_keeps_its_log_under_the_cap_and_followers_their_place() {
    let mut h = Host::new("logcap");
    h.start(&[]);
    let mut run = vec!["run", "-d", "--name", "capped", "--log-opt", "max-size=1m", "--log-opt", "max-file=2", "--"];
    run.extend_from_slice(WRITER);
    h.ok(&run);
    // A follower from the first line.
    let mut follower = h.cli();
    follower.args(["logs", "-f", "capped"]).stdout(std::process::Stdio::piped());
    let mut follower = follower.spawn().expect("logs -f");
    let path = log_path(&h, "capped");
    // Until it has written three times the cap (10 s at most: a loaded machine writes slower).
    let t0 = Instant::now();
    let mut peak = 0;
    while t0.elapsed() < Duration::from_secs(10) && log_size(&path).0 < 6 << 20 {
        peak = peak.max(log_size(&path).1);
        std::thread::sleep(Duration::from_millis(20));
    }
    let (written, held) = log_size(&path);
    let _ = follower.kill();
    let out = follower.wait_with_output().expect("follower");
    let seen = numbers(&String::from_utf8_lossy(&out.stdout));
    assert!(written >= 6 << 20, "the writer wrote only {written} bytes: too little to test the cap");
    assert!(peak <= 3 << 20 && held <= 3 << 20, "the log held {held} bytes (peak {peak}) under a 2 MiB cap, {written} written");
    // The follower: from line 1, in order, none twice (a jump forward only if it fell behind).
    assert_eq!(seen.first(), Some(&1), "the follower starts at the first line");
    assert!(seen.windows(2).all(|w| w[1] > w[0]), "lines out of order or repeated");
    // `logs` once the writer is stopped (a trim while it reads would make a jump): from the
    // first whole line kept, consecutive from there.
    h.ok(&["stop", "-t", "1", "capped"]);
    let now = numbers(&h.ok(&["logs", "capped"]));
    assert!(now.first().is_some_and(|n| *n > 1), "the head was trimmed");
    assert!(now.windows(2).all(|w| w[1] == w[0] + 1), "the kept lines are whole and consecutive");

    // The control: the same writer with no cap holds all it wrote.
    let mut run = vec!["run", "-d", "--name", "uncapped", "--log-opt", "max-size=-1", "--"];
    run.extend_from_slice(WRITER);
    h.ok(&run);
    let path = log_path(&h, "uncapped");
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) && log_size(&path).0 < 6 << 20 {
        std::thread::sleep(Duration::from_millis(20));
    }
    let (written, held) = log_size(&path);
    assert!(held >= 4 << 20 && held + (1 << 20) >= written, "uncapped: {held} of {written} bytes held");
    // Bad options: one line, nothing made.
    for bad in ["max-size=12x", "max-file=0", "compress=true"] {
        let err = h.fails(&["run", "-d", "--name", "bad", "--log-opt", bad, "--", "true"]);
        assert!(err.contains("invalid --log-opt") && err.lines().count() == 1, "{bad}: {err}");
    }
    h.finish();
}

#[test]
fn removal_works_on_a_full_disk() {
    let mut h = Host::new("fulldisk");
    let data = h.dir.join("data");
    std::fs::create_dir_all(&data).expect("data-root");
    let mounted = std::process::Command::new("mount").args(["-t", "tmpfs", "-o", "size=64m", "tmpfs"]).arg(&data).status().expect("mount");
    assert!(mounted.success(), "mount a 64 MiB tmpfs as the data-root");
    h.start(&[]);
    h.run_d("keep", &[], &["sleep", "300"]);
    // The attack: a writer without a cap (and without pause: `yes`) fills the data-root.
    h.ok(&["run", "-d", "--name", "filler", "--log-opt", "max-size=-1", "--", "yes", "a line of the filler"]);
    let full = || text(&h.sh(&format!("df -k --output=avail {} | tail -1", data.display()))).trim().parse::<u64>().unwrap_or(u64::MAX) < 1024;
    // It writes until the disk is full (`yes` ends at ENOSPC): its exit still commits (the
    // store's reserve is given back for it).
    weft_itest::eventually("the filler ran out of disk", || h.ok(&["inspect", "-f", "{{.State.Status}}", "filler"]) == "exited");
    // Its log goes first, then the removal commits.
    h.ok(&["rm", "-f", "filler"]);
    assert!(!full(), "the filler's log went with it");
    // Full of something else (a file): the store gives its reserve back and the removal of a
    // container that frees next to nothing still commits.
    let filler = data.join("filler");
    let _ = h.sh(&format!("dd if=/dev/zero of={} bs=1M 2>/dev/null", filler.display()));
    assert!(full(), "the filler file filled the data-root");
    h.ok(&["rm", "-f", "keep"]);
    assert!(h.daemon_log().contains("reserve is given back"), "the store's reserve was used");
    std::fs::remove_file(&filler).expect("remove the filler");
    h.run_d("again", &[], &["sleep", "300"]);
    h.ok(&["rm", "-f", "again"]);
    h.stop_daemon();
    let unmounted = std::process::Command::new("umount").arg(&data).status().expect("umount");
    assert!(unmounted.success(), "umount the data-root");
    h.finish();
}
