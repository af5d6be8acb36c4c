//! Sysctls, written through `/proc/sys` (never by spawning `sysctl`). The `net.*` tree belongs to
//! the network namespace of the thread that opens the file.

use crate::{KernelError, Result};

fn path_of(key: &str) -> String {
    format!("/proc/sys/{}", key.replace('.', "/"))
}

/// `sysctl -w KEY=VALUE`. Interface names with dots are not supported (weft never makes any).
pub fn write(key: &str, value: &str) -> Result<()> {
    let path = path_of(key);
    std::fs::write(&path, value).map_err(|source| KernelError::Path { op: "write sysctl", path, source })
}

/// `sysctl -n KEY`.
pub fn read(key: &str) -> Result<String> {
    let path = path_of(key);
    std::fs::read_to_string(&path)
        .map(|s| s.trim().to_string())
        .map_err(|source| KernelError::Path { op: "read sysctl", path, source })
}
