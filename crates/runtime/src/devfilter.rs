//! The devices cgroup of cgroup v2: an eBPF program of type `BPF_PROG_TYPE_CGROUP_DEVICE`
//! attached to the container's cgroup, which the kernel runs on every open and mknod of a device
//! node and which allows exactly what the rules allow (what `devices.allow` does after
//! `devices.deny a` on v1). The program is a straight list of rule blocks, as runc's: each
//! compares the type, the access asked for, the major and the minor, and answers 1 (allowed) on
//! a match; after the last, 0 (`EPERM`). It stays attached (the kernel holds it) until the
//! cgroup is removed.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use crate::cgroup::DeviceRule;

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;
/// `bpf_cgroup_dev_ctx.access_type`: the type in the low 16 bits, the access in the high.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    /// dst in the low nibble, src in the high.
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn { code, regs: (src << 4) | dst, off, imm }
}

/// `rD = *(u32 *)(rS + off)`
const fn ldx_w(dst: u8, src: u8, off: i16) -> Insn {
    insn(0x61, dst, src, off, 0)
}
/// `rD &= imm`
const fn and_k(dst: u8, imm: i32) -> Insn {
    insn(0x57, dst, 0, 0, imm)
}
/// `rD >>= imm`
const fn rsh_k(dst: u8, imm: i32) -> Insn {
    insn(0x77, dst, 0, 0, imm)
}
/// `rD = rS`
const fn mov_x(dst: u8, src: u8) -> Insn {
    insn(0xbf, dst, src, 0, 0)
}
/// `rD = imm`
const fn mov_k(dst: u8, imm: i32) -> Insn {
    insn(0xb7, dst, 0, 0, imm)
}
/// `if rD != imm goto +off`
const fn jne_k(dst: u8, imm: i32, off: i16) -> Insn {
    insn(0x55, dst, 0, off, imm)
}
const EXIT: Insn = insn(0x95, 0, 0, 0, 0);

/// The program for `rules`: r2 = type, r3 = access, r4 = major, r5 = minor; a block per rule.
pub fn program(rules: &[DeviceRule]) -> Vec<Insn> {
    let mut p = vec![ldx_w(2, 1, 0), and_k(2, 0xffff), ldx_w(3, 1, 0), rsh_k(3, 16), ldx_w(4, 1, 4), ldx_w(5, 1, 8)];
    for r in rules {
        // Jumps carry a placeholder offset, set to "past this block" once its length is known.
        let mut block = Vec::new();
        match r.kind {
            'b' => block.push(jne_k(2, DEV_BLOCK, 0)),
            'c' => block.push(jne_k(2, DEV_CHAR, 0)),
            _ => {}
        }
        let acc = [(r.mknod, ACC_MKNOD), (r.read, ACC_READ), (r.write, ACC_WRITE)].iter().filter(|(on, _)| *on).fold(0, |a, (_, b)| a | b);
        if acc != ACC_MKNOD | ACC_READ | ACC_WRITE {
            // What was asked, less what the rule allows, must be nothing.
            block.extend([mov_x(1, 3), and_k(1, !acc & 7), jne_k(1, 0, 0)]);
        }
        if let Some(major) = r.major {
            block.push(jne_k(4, major as i32, 0));
        }
        if let Some(minor) = r.minor {
            block.push(jne_k(5, minor as i32, 0));
        }
        block.extend([mov_k(0, 1), EXIT]);
        let len = block.len();
        for (i, ins) in block.iter_mut().enumerate() {
            if ins.code == 0x55 {
                ins.off = (len - 1 - i) as i16;
            }
        }
        p.extend(block);
    }
    p.extend([mov_k(0, 0), EXIT]);
    p
}

/// `union bpf_attr` for `BPF_PROG_LOAD`, up to `expected_attach_type`, zero-padded.
#[repr(C)]
struct LoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
    _pad: [u8; 56],
}

/// `union bpf_attr` for `BPF_PROG_ATTACH`.
#[repr(C)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
    _pad: [u8; 44],
}

/// Loads the program for `rules` and attaches it to the cgroup (v2) at `dir`.
pub fn attach(dir: &Path, rules: &[DeviceRule]) -> std::io::Result<()> {
    let insns = program(rules);
    let license = c"Apache-2.0";
    let mut log = vec![0u8; 4096];
    let mut name = [0u8; 16];
    name[..9].copy_from_slice(b"weft_devs");
    let attr = LoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        kern_version: 0,
        prog_flags: 0,
        prog_name: name,
        prog_ifindex: 0,
        expected_attach_type: BPF_CGROUP_DEVICE,
        _pad: [0; 56],
    };
    // SAFETY: bpf(BPF_PROG_LOAD) reads `attr` and the instruction and license buffers it points
    // to, and writes at most `log_size` bytes to `log`; all outlive the call.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_LOAD, &attr as *const LoadAttr, std::mem::size_of::<LoadAttr>()) };
    if fd < 0 {
        let err = std::io::Error::last_os_error();
        let end = log.iter().position(|b| *b == 0).unwrap_or(0);
        let verifier = String::from_utf8_lossy(&log[..end]).trim().replace('\n', "; ");
        return Err(if verifier.is_empty() { err } else { std::io::Error::new(err.kind(), format!("{err}: {verifier}")) });
    }
    // SAFETY: fd is a fresh program fd returned above that nothing else owns.
    let prog = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let cgroup = std::fs::File::open(dir)?;
    let attr = AttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        replace_bpf_fd: 0,
        _pad: [0; 44],
    };
    // SAFETY: bpf(BPF_PROG_ATTACH) reads `attr`, which outlives the call; the fds in it are open.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_ATTACH, &attr as *const AttachAttr, std::mem::size_of::<AttachAttr>()) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // The attachment holds the program: our fd can go.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_jump_past_themselves() {
        let r = DeviceRule { kind: 'c', major: Some(1), minor: None, read: true, write: false, mknod: false };
        let p = program(&[r]);
        // prologue 6; type, access (3), major, r0=1, exit: 7; then r0=0, exit.
        assert_eq!(p.len(), 6 + 7 + 2);
        assert_eq!(p[6], jne_k(2, DEV_CHAR, 6));
        assert_eq!(p[8], and_k(1, ACC_MKNOD | ACC_WRITE));
        assert_eq!(p[9], jne_k(1, 0, 3));
        assert_eq!(p[10], jne_k(4, 1, 2));
        assert_eq!(p[13..], [mov_k(0, 0), EXIT]);
        let all = DeviceRule { kind: 'a', major: None, minor: None, read: true, write: true, mknod: true };
        assert_eq!(program(&[all])[6..8], [mov_k(0, 1), EXIT], "a *:* rwm matches everything");
    }
}
