//! The harness's own checks: the leak check fails when something is left behind, naming it, and
//! a test that fails early is still torn down.

use std::panic::{catch_unwind, AssertUnwindSafe};

use weft_itest::{text, Host};

fn panic_message(e: &Box<dyn std::any::Any + Send>) -> String {
    e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default()
}

fn netns_exists(ns: &str) -> bool {
    let o = std::process::Command::new("ip").args(["netns", "list"]).output().expect("ip netns list");
    String::from_utf8_lossy(&o.stdout).lines().any(|l| l.split_whitespace().next() == Some(ns))
}

#[test]
fn leak_check_names_what_was_left_behind() {
    let mut h = Host::new("leak");
    h.start(&[]);
    // A container removed by the teardown's `rm -f` is not a leak.
    h.run_d("c1", &["-p", "8080:80"], &["sleep", "300"]);
    // Leaked on purpose: a veth, a published-port element, a mount under the exec-root and a
    // process in the test host's namespace.
    h.ip(&["link", "add", "vethleak0", "type", "veth", "peer", "name", "vethleak1"]);
    let add = h.sh("nft add element inet weft ports_any '{ tcp . 9999 : 172.17.0.99 . 80 }'");
    assert!(add.status.success(), "{}", text(&add));
    let mnt = h.dir.join("exec/leaked-mount");
    std::fs::create_dir_all(&mnt).expect("mount point");
    let o = std::process::Command::new("mount").args(["-t", "tmpfs", "leak", &mnt.display().to_string()]).output().expect("mount");
    assert!(o.status.success(), "{}", text(&o));
    let mut sleeper = std::process::Command::new("ip").args(["netns", "exec", &h.ns, "sleep", "300"]).spawn().expect("sleep");
    let ns = h.ns.clone();

    let err = catch_unwind(AssertUnwindSafe(move || h.finish())).expect_err("the leak check must fail");
    let msg = panic_message(&err);
    for want in [
        "veth vethleak0 on the test host".to_string(),
        "veth vethleak1 on the test host".to_string(),
        "element [{\"concat\":[\"tcp\",9999]},{\"concat\":[\"172.17.0.99\",80]}] in inet weft ports_any".to_string(),
        format!("mount {}", mnt.display()),
        format!("process {} (sleep 300)", sleeper.id()),
    ] {
        assert!(msg.contains(&want), "{want:?} missing from the report:\n{msg}");
    }
    assert_eq!(msg.lines().count(), 6, "exactly the five leaks (c1 and its port went with rm -f):\n{msg}");
    // The sweep after the check removed everything.
    let status = sleeper.wait().expect("reap sleep");
    assert!(!status.success(), "the sweep killed the leaked process");
    assert!(!netns_exists(&ns), "the sweep deleted {ns}");
    assert!(!std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo").contains(&mnt.display().to_string()));
}

#[test]
fn a_test_that_fails_early_is_still_torn_down() {
    let mut h = Host::new("early");
    h.start(&[]);
    h.run_d("c1", &[], &["sleep", "300"]);
    let ns = h.ns.clone();
    let dir = h.dir.clone();
    let r = catch_unwind(AssertUnwindSafe(move || {
        let _h = h;
        panic!("the test's own failure");
    }));
    assert_eq!(panic_message(&r.expect_err("the test failed")), "the test's own failure", "the failure stays the message");
    assert!(!netns_exists(&ns), "{ns} deleted");
    assert!(!dir.exists(), "{} removed", dir.display());
    let procs = std::process::Command::new("pgrep").args(["-f", &dir.display().to_string()]).output().expect("pgrep");
    assert!(procs.stdout.is_empty(), "container processes ended: {}", text(&procs));
}
