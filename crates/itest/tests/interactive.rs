//! The seeds' commands as typed at a terminal: `run -i -t`, detach and attach, `exec -i -t`,
//! `-i` pipes, window sizes, exit codes; and root filesystems from tar archives.

use std::io::Write;
use std::process::{Command, Stdio};

use weft_itest::{eventually, text, Host};

const PROMPT: &str = "/ # ";

/// Seed 001, typed: a `--net=none` shell, wired by hand from outside with a veth pair into the
/// bridge; ping the gateway from inside; detach, attach again, exit, and `--rm` removes it.
#[test]
fn seed_001_session_on_a_terminal() {
    let mut h = Host::new("seed1");
    h.start(&[]);
    let rootfs = h.rootfs();
    let mut t = h.terminal(&["run", "-i", "-t", "--rm", "--net", "none", "--name", "box", "--rootfs", &rootfs, "--", "sh"]);
    t.expect(PROMPT);
    t.send("ip addr\r");
    let addrs = t.expect(PROMPT);
    assert!(addrs.contains("1: lo:") && !addrs.contains("eth0"), "only lo in a --net=none container:\n{addrs}");

    // From outside, as the seed: the pid, a veth pair with A on the bridge, B as eth0 inside.
    let pid = h.ok(&["inspect", "-f", "{{.State.Pid}}", "box"]);
    let ns = format!("/proc/{pid}/ns/net");
    h.ip(&["link", "add", "A", "type", "veth", "peer", "name", "B"]);
    h.ip(&["link", "set", "A", "master", "weft0"]);
    h.ip(&["link", "set", "A", "up"]);
    h.ip(&["link", "set", "B", "netns", &ns]);
    for cmd in ["ip link set dev B name eth0", "ip link set eth0 up", "ip addr add 172.17.42.99/16 dev eth0", "ip route add default via 172.17.0.1"] {
        h.sh_ok(&format!("nsenter --net={ns} {cmd}"));
    }
    t.send("ip addr show eth0; ping -c1 -W2 172.17.0.1 && echo PING-$((40+2))\r");
    let out = t.expect("PING-42");
    assert!(out.contains("172.17.42.99/16"), "{out}");

    // CTRL+P CTRL+Q: the CLI ends, the shell runs on.
    t.send("\x10\x11");
    assert_eq!(t.wait(), 0, "detaching exits 0");
    assert!(h.ok(&["ps"]).contains("box"), "still running after the detach");

    let mut t = h.terminal(&["attach", "box"]);
    attached(&mut t);
    t.send("echo again-$((6*7))\r");
    t.expect("again-42");
    t.send("exit 3\r");
    assert_eq!(t.wait(), 3, "the shell's exit code comes back through attach");
    eventually("--rm removed box", || !h.ok(&["ps", "-a"]).contains("box"));
    // A went with the namespace.
    eventually("A gone with the container", || !h.link_names().contains(&"A".to_string()));
    h.finish();
}

/// Waits until an `attach` is live: a prompt only the container's shell can print. (Keys typed
/// before the CLI has the terminal in raw mode are the local terminal's: ^Q would be flow control.)
fn attached(t: &mut weft_itest::Terminal) {
    t.send("\r");
    t.expect(PROMPT);
}

#[test]
fn terminal_size_exit_codes_and_detach_keys() {
    let mut h = Host::new("tty");
    h.start(&[]);
    let rootfs = h.rootfs();

    // The size at start, then after the window changes.
    let mut t = h.terminal(&["run", "-i", "-t", "--rm", "--rootfs", &rootfs, "--", "sh"]);
    t.resize(40, 120);
    t.expect(PROMPT);
    let size_is = |t: &mut weft_itest::Terminal, want: &str| {
        eventually(&format!("the size {want} inside"), || {
            t.send("stty size\r");
            t.expect(PROMPT).contains(want)
        })
    };
    size_is(&mut t, "40 120");
    // SIGWINCH reaches the CLI, which resizes the container's terminal.
    t.resize(33, 101);
    size_is(&mut t, "33 101");
    // ^C goes through the terminal to the foreground command, not to the shell.
    t.send("sleep 30\r");
    std::thread::sleep(std::time::Duration::from_millis(200));
    t.send("\x03");
    t.expect(PROMPT);
    t.send("tty; exit 7\r");
    let out = t.expect("/dev/pts/");
    assert!(out.contains("/dev/pts/"), "{out}");
    assert_eq!(t.wait(), 7);

    // A terminal's output is all there when the exit is: in the stream, and in the log.
    let o = h.weft(&["run", "-t", "--name", "counted", "--rootfs", &rootfs, "--", "sh", "-c", "seq 1 3000; exit 6"]);
    assert_eq!(o.status.code(), Some(6));
    assert!(String::from_utf8_lossy(&o.stdout).ends_with("2999\r\n3000\r\n"), "{}", String::from_utf8_lossy(&o.stdout).len());
    assert!(h.ok(&["logs", "counted"]).ends_with("2999\r\n3000"));
    // -t without -i needs no terminal; the exit code comes back.
    let o = h.weft(&["run", "-t", "--rm", "--rootfs", &rootfs, "--", "sh", "-c", "test -t 1 && echo on-a-tty; exit 4"]);
    assert_eq!(o.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&o.stdout).contains("on-a-tty"));
    // -i -t from something that is not a terminal: refused, as docker does.
    let o = h.weft(&["run", "-i", "-t", "--rm", "--rootfs", &rootfs, "--", "true"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("the input device is not a TTY"), "{o:?}");
    assert!(h.fails(&["run", "-d", "--detach-keys", "ctrl-1", "--rootfs", &rootfs, "--", "true"]).contains("invalid detach keys"));

    // --detach-keys of one's own; keys that start the sequence and break it go through as typed.
    h.ok(&["run", "-d", "-i", "-t", "--name", "bg", "--rootfs", &rootfs, "--", "sh"]);
    let mut t = h.terminal(&["attach", "--detach-keys", "q,z", "bg"]);
    attached(&mut t);
    t.send("echo aqb-$((1+1))\r");
    t.expect("aqb-2");
    t.send("qz");
    assert_eq!(t.wait(), 0);
    let mut t = h.terminal(&["attach", "bg"]);
    attached(&mut t);
    t.send("echo still-$((2+2))\r");
    t.expect("still-4");
    t.send("\x10\x11");
    assert_eq!(t.wait(), 0);
    assert!(h.ok(&["ps"]).contains("bg"));
    h.finish();
}

#[test]
fn exec_with_a_terminal_and_with_pipes() {
    let mut h = Host::new("exec");
    h.start(&[]);
    h.run_d("web", &[], &["sleep", "300"]);

    let mut t = h.terminal(&["exec", "-i", "-t", "web", "sh"]);
    t.expect(PROMPT);
    t.send("tty; ps\r");
    let out = t.expect(PROMPT);
    assert!(out.contains("/dev/pts/") && out.contains("sleep 300"), "in the container's pid namespace, on its devpts:\n{out}");
    t.send("exit 4\r");
    assert_eq!(t.wait(), 4);

    // Without a terminal: stdout and stderr apart, stdin piped, exit codes.
    let o = h.exec("web", &["sh", "-c", "echo to-out; echo to-err >&2; exit 5"]);
    assert_eq!(o.status.code(), Some(5));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "to-out\n");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "to-err\n");
    assert_eq!(pipe_into(&h, &["exec", "-i", "web", "tr", "a-z", "A-Z"], "piped text\n"), "PIPED TEXT\n");
    // Without -i the command reads nothing.
    assert_eq!(pipe_into(&h, &["exec", "web", "cat"], "ignored\n"), "");
    assert_eq!(h.exec("web", &["no-such-command"]).status.code(), Some(127));
    h.finish();
}

/// Runs the CLI with `input` on its stdin; returns its stdout (asserting success).
fn pipe_into(h: &Host, args: &[&str], input: &str) -> String {
    let mut child = h.cli().args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("cli");
    // Written from a thread while the output is read: neither pipe may fill up and stall the other.
    let (mut stdin, input) = (child.stdin.take().expect("stdin"), input.to_string());
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let o = child.wait_with_output().expect("cli output");
    let written = writer.join().expect("writer");
    assert!(written.is_ok() || !args.contains(&"-i"), "{args:?}: writing stdin failed: {written:?}");
    assert!(o.status.success(), "{args:?}: {o:?}");
    String::from_utf8_lossy(&o.stdout).to_string()
}

#[test]
fn run_i_relays_stdin_and_output_as_written() {
    let mut h = Host::new("runi");
    h.start(&[]);
    let rootfs = h.rootfs();
    assert_eq!(pipe_into(&h, &["run", "-i", "--rm", "--rootfs", &rootfs, "--", "cat"], "hi\n"), "hi\n");
    // A large input through and back, whole.
    let big: String = (0..20000).map(|i| format!("line {i}\n")).collect();
    assert_eq!(pipe_into(&h, &["run", "-i", "--rm", "--rootfs", &rootfs, "--", "cat"], &big), big);
    // Without -i, stdin is not read.
    assert_eq!(pipe_into(&h, &["run", "--rm", "--rootfs", &rootfs, "--", "cat"], "hi\n"), "");

    // Output arrives as it is written, not when the container ends: the command cannot end
    // before the test has read its first line and released it (a file in its root).
    let go = std::path::Path::new(&rootfs).join("tmp/go");
    let mut child = h
        .cli()
        .args(["run", "--rm", "--name", "slow", "--rootfs", &rootfs, "--", "sh", "-c", "echo first; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo second"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("run");
    // (Should the first line never come before the end, the release comes late and the check
    // below fails instead of the test hanging.)
    let late = go.clone();
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(20));
        let _ = std::fs::write(late, "");
    });
    let mut out = std::io::BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).expect("read");
    assert_eq!(line, "first\n");
    assert!(!go.exists() && h.ok(&["ps"]).contains("slow"), "the first line came while the container was still running");
    std::fs::write(&go, "").expect("release");
    line.clear();
    std::io::BufRead::read_line(&mut out, &mut line).expect("read");
    assert_eq!(line, "second\n");
    assert!(child.wait().expect("wait").success());
    h.finish();
}

#[test]
fn rootfs_from_a_tar_archive_is_unpacked_once() {
    let mut h = Host::new("tar");
    h.start(&[]);
    let rootfs = h.rootfs();
    // What `docker export` writes: a plain tar of the tree, entries under ./; and gzipped.
    let tar = h.dir.join("busybox.tar");
    let tgz = h.dir.join("busybox.tar.gz");
    for (file, flags) in [(&tar, "-cf"), (&tgz, "-czf")] {
        let o = Command::new("tar").args(["-C", &rootfs, flags]).arg(file).arg(".").output().expect("tar");
        assert!(o.status.success(), "{o:?}");
    }
    let tar = tar.display().to_string();
    for _ in 0..2 {
        assert_eq!(h.ok(&["run", "--rm", "--rootfs", &tar, "--", "sh", "-c", "echo $((20+22)) > /tmp/x; cat /tmp/x"]), "42");
    }
    let cache = h.dir.join("data/rootfs");
    let unpacked = || std::fs::read_dir(&cache).expect("rootfs cache").count();
    assert_eq!(unpacked(), 1, "unpacked once for two runs");
    let gz = h.ok(&["run", "--rm", "--rootfs", &tgz.display().to_string(), "--", "sh", "-c", "cat /tmp/x 2>/dev/null || echo fresh"]);
    assert_eq!(gz, "fresh", "the gzipped archive is a tree of its own");
    assert_eq!(unpacked(), 2);
    // The container's tree is the unpacked one, not the directory the tar was made from.
    assert!(!std::path::Path::new(&rootfs).join("tmp/x").exists());

    // An archive whose entries climb out is refused and writes nothing outside.
    let evil = h.dir.join("evil.tar");
    let script = format!(
        "import tarfile, io\nt = tarfile.open('{}', 'w')\nfor name in ['./bin', '../../escaped-{}']:\n    i = tarfile.TarInfo(name); d = b'x'; i.size = len(d); t.addfile(i, io.BytesIO(d))\nt.close()",
        evil.display(),
        h.ns
    );
    let o = Command::new("python3").args(["-c", &script]).output().expect("python3");
    assert!(o.status.success(), "{o:?}");
    let err = h.fails(&["run", "--rm", "--rootfs", &evil.display().to_string(), "--", "true"]);
    assert!(err.contains("would be written outside the root filesystem"), "{err}");
    // Where `../../` from the unpacking directory would land, and anywhere else of the test's.
    let escaped = format!("escaped-{}", h.ns);
    let mut stack = vec![h.dir.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir").flatten() {
            assert_ne!(e.file_name().to_string_lossy(), escaped, "written outside the tree: {}", e.path().display());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            }
        }
    }
    assert!(!std::path::Path::new("/tmp").join(&escaped).exists());
    assert_eq!(unpacked(), 2, "nothing of the refused archive stays");
    let junk = h.dir.join("junk.tar");
    std::fs::write(&junk, b"not a tar at all").expect("write");
    assert!(h.fails(&["run", "--rm", "--rootfs", &junk.display().to_string(), "--", "true"]).contains("is not a tar archive"));
    h.finish();
}

/// A first run from a large archive shows on a terminal how far weftd's unpacking has come
/// (`GET /rootfs/progress`, polled by the CLI); a run that finds the archive unpacked shows
/// nothing, and neither does a piped run.
#[test]
fn a_first_unpack_shows_its_progress_on_a_terminal() {
    let mut h = Host::new("unp");
    h.start(&[]);
    let rootfs = h.rootfs();
    // busybox's tree and 1,500 small files (~1.5 MiB of archive): an unpacking that
    // lasts long enough to be seen (about a second here), one file at a time.
    let big = h.dir.join("big.tar").display().to_string();
    let script = format!(
        "import io, tarfile\nt = tarfile.open('{big}', 'w')\nt.add('{rootfs}', arcname='.')\nfor i in range(1500):\n    d = b'x' * 100; ti = tarfile.TarInfo('./many/f%05d' % i); ti.size = len(d); t.addfile(ti, io.BytesIO(d))\nt.close()"
    );
    let o = Command::new("python3").args(["-c", &script]).output().expect("python3");
    assert!(o.status.success(), "{o:?}");

    let mut t = h.terminal(&["run", "--rm", "--rootfs", &big, "--", "echo", "ran"]);
    t.expect("ran");
    let seen = t.seen.clone();
    assert_eq!(t.wait(), 0);
    // `unpacking big.tar NN% (read/size MiB)`, the size the archive's.
    let size = format!("/{:.1} MiB)", std::fs::metadata(&big).expect("size").len() as f64 / (1024.0 * 1024.0));
    assert!(seen.contains("unpacking big.tar") && seen.contains(&size), "the unpacking was drawn ({size}): {seen:?}");

    let mut again = h.terminal(&["run", "--rm", "--rootfs", &big, "--", "echo", "again"]);
    again.expect("again");
    let seen = again.seen.clone();
    assert_eq!(again.wait(), 0);
    assert!(!seen.contains("unpacking"), "already unpacked: nothing drawn: {seen:?}");

    // A new modification time makes it a new archive: unpacked again, piped this time.
    let o = Command::new("touch").args(["-d", "2001-01-01", &big]).output().expect("touch");
    assert!(o.status.success());
    let o = h.weft(&["run", "--rm", "--rootfs", &big, "--", "echo", "piped"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!((String::from_utf8_lossy(&o.stdout).trim(), String::from_utf8_lossy(&o.stderr).trim()), ("piped", ""), "nothing drawn when piped");
    assert_eq!(std::fs::read_dir(h.dir.join("data/rootfs")).expect("cache").count(), 2, "unpacked twice");
    h.finish();
}

/// Nothing a user runs (the scripts, the crates, CI, the README) reads the development
/// machine's shared directory: a clone with nothing beside it works.
#[test]
fn nothing_a_user_runs_reads_the_shared_directory() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let needle = ["..", "shared"].join("/");
    let (mut found, mut files) = (Vec::new(), 0);
    let mut stack: Vec<std::path::PathBuf> = ["scripts", "crates", ".ci", "README.md"].iter().map(|p| root.join(p)).collect();
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            stack.extend(std::fs::read_dir(&p).expect("read dir").map(|e| e.expect("entry").path()));
        } else if let Ok(text) = std::fs::read_to_string(&p) {
            files += 1;
            if text.contains(&needle) {
                found.push(p.display().to_string());
            }
        }
    }
    assert!(files > 50, "the walk read only {files} files from {}", root.display());
    assert!(found.is_empty(), "these read {needle}: {found:?}");
}
