//! The cgroup v2 device filter against the real kernel (needs root). This machine may mount its
//! controllers on v1, but a cgroup2 hierarchy (at /sys/fs/cgroup or /sys/fs/cgroup/unified) runs
//! device programs whatever controllers it has: a shell moved into a cgroup with the filter
//! opens /dev/null (allowed) and not /dev/zero (refused with EPERM), and both outside it.

use std::path::PathBuf;
use std::process::Command;

use weft_runtime::cgroup::DeviceRule;

fn cgroup2_mount() -> PathBuf {
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    info.lines()
        .find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let point = left.split(' ').nth(4)?;
            right.starts_with("cgroup2 ").then(|| PathBuf::from(point))
        })
        .expect("a cgroup2 mount (the device filter needs one)")
}

#[test]
fn the_v2_device_filter_refuses_what_the_rules_do_not_allow() {
    let dir = cgroup2_mount().join(format!("weft-devfilter-test-{}", std::process::id()));
    std::fs::create_dir(&dir).expect("create a cgroup (tests need root)");
    let null = DeviceRule { kind: 'c', major: Some(1), minor: Some(3), read: true, write: true, mknod: false };
    let attached = weft_runtime::devfilter::attach(&dir, &[null]);
    let procs = dir.join("cgroup.procs").display().to_string();
    let sh = |inside: bool, cmd: &str| {
        let join = if inside { format!("echo $$ > {procs} && ") } else { String::new() };
        Command::new("sh").arg("-c").arg(format!("{join}{cmd}")).output().expect("sh")
    };
    let results = attached.as_ref().ok().map(|()| {
        (sh(true, "head -c 1 /dev/null && echo null-ok"), sh(true, "head -c 1 /dev/zero | wc -c"), sh(false, "head -c 1 /dev/zero | wc -c"))
    });
    let _ = std::fs::remove_dir(&dir);
    attached.expect("load and attach the filter");
    let (null, zero, outside) = results.expect("ran");
    assert!(String::from_utf8_lossy(&null.stdout).contains("null-ok"), "/dev/null allowed: {null:?}");
    let err = String::from_utf8_lossy(&zero.stderr);
    assert!(err.contains("Operation not permitted"), "/dev/zero refused with EPERM: {zero:?}");
    assert_eq!(String::from_utf8_lossy(&zero.stdout).trim(), "0");
    assert_eq!(String::from_utf8_lossy(&outside.stdout).trim(), "1", "outside the cgroup /dev/zero reads");
}
