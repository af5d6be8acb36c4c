//! The Debian package (issue 22): `scripts/package.sh` builds it; its files are installed into a
//! fresh root; its init script starts weftd (options from `/etc/default/weft`'s WEFTD_OPTS)
//! inside the test's namespace and a private mount namespace where the root is laid over the
//! machine's /usr and /etc; a container runs; the script stops it.

use std::process::Command;

use weft_itest::{bin_dir, text, Host};

#[test]
fn the_package_installs_starts_runs_a_container_and_stops() {
    let h = Host::new("pkg");
    let out = h.dir.join("deb");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/package.sh");
    let o = Command::new("bash").arg(script).arg(bin_dir()).arg(&out).env("DEB_COMPRESS", "none").output().expect("package.sh");
    assert!(o.status.success(), "package.sh: {}", text(&o));
    let deb = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let info = Command::new("dpkg-deb").args(["-I", &deb]).output().expect("dpkg-deb");
    assert!(text(&info).contains("Depends: libc6, libnftables1, iproute2"), "{}", text(&info));
    let files = text(&Command::new("dpkg-deb").args(["-c", &deb]).output().expect("dpkg-deb"));
    for f in ["./usr/bin/weftd", "./usr/bin/weft", "./usr/bin/weft-init", "./usr/lib/cni/weft-cni", "./lib/systemd/system/weft.service", "./etc/init.d/weft", "./etc/default/weft", "./usr/share/man/man8/weftd.8.gz", "./usr/share/man/man1/weft.1.gz", "./usr/share/bash-completion/completions/weft"] {
        assert!(files.lines().any(|l| l.ends_with(f)), "{f} in the package: {files}");
    }
    // A fresh root with the package's files.
    let root = h.dir.join("root");
    let o = Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root).output().expect("dpkg-deb -x");
    assert!(o.status.success(), "dpkg-deb -x: {}", text(&o));
    let (upper, work) = (h.dir.join("etc-upper"), h.dir.join("etc-work"));
    std::fs::create_dir_all(&upper).expect("upper");
    std::fs::create_dir_all(&work).expect("work");
    let rootfs = h.rootfs();
    // The harness's own cgroup parent for this host: its leak check looks there.
    let cgroup = h.cgroup_parent();
    let steps = format!(
        r#"set -e
mount -t overlay overlay -o lowerdir={root}/usr:/usr /usr
mount -t overlay overlay -o lowerdir={root}/etc:/etc,upperdir={upper},workdir={work} /etc
mount -t tmpfs tmpfs /run; mount -t tmpfs tmpfs /var/log; mount -t tmpfs tmpfs /var/lib
echo 'WEFTD_OPTS="--bip=10.57.0.1/24 --cgroup-parent={cgroup}"' >> /etc/default/weft
/etc/init.d/weft start
/etc/init.d/weft status
weft run --rm --rootfs {rootfs} -- ip -4 -o addr show eth0
man -l /usr/share/man/man8/weftd.8.gz 2>/dev/null | grep -q -- '--bip' || zcat /usr/share/man/man8/weftd.8.gz | grep -q 'bip'
/etc/init.d/weft stop
/etc/init.d/weft status || echo "stopped: $?"
"#,
        root = root.display(),
        upper = upper.display(),
        work = work.display(),
    );
    let o = Command::new("nsenter").arg(format!("--net=/run/netns/{}", h.ns)).args(["unshare", "--mount", "--propagation", "private", "sh", "-c", &steps]).output().expect("nsenter");
    let said = text(&o);
    assert!(o.status.success(), "the packaged service: {said}");
    assert!(said.contains("Starting weftd") && said.contains("weftd is running"), "{said}");
    assert!(said.contains("inet 10.57.0."), "a container on the bridge WEFTD_OPTS asked for: {said}");
    assert!(said.contains("Stopping weftd") && said.contains("weftd is not running") && said.contains("stopped: 3"), "{said}");
    h.finish();
}
