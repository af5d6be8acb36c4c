//! Identifiers and the validation of user-supplied names.

use crate::ModelError;

/// A new 64-hex-digit id (256 random bits from the kernel), as Docker's ids look.
pub fn new_id() -> String {
    let mut buf = [0u8; 32];
    // getrandom(2) never fails for 32 bytes once the pool is initialised; fall back to the clock
    // mixed with the pid rather than panic.
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut buf))
        .is_err()
    {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        buf[..16].copy_from_slice(&t.to_le_bytes());
        buf[16..20].copy_from_slice(&std::process::id().to_le_bytes());
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// The 12-character form of an id shown by `ps` and used in bridge names.
pub fn short_id(id: &str) -> &str {
    &id[..id.len().min(12)]
}

fn name_ok(s: &str, min_len: usize) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && s.len() >= min_len
        && s.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Docker's rule for container names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn validate_container_name(s: &str) -> Result<(), ModelError> {
    let s = s.strip_prefix('/').unwrap_or(s);
    if name_ok(s, 2) {
        Ok(())
    } else {
        Err(ModelError::ContainerName(s.to_string()))
    }
}

/// Network names: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub fn validate_network_name(s: &str) -> Result<(), ModelError> {
    if name_ok(s, 1) {
        Ok(())
    } else {
        Err(ModelError::NetworkName(s.to_string()))
    }
}

/// RFC 1123 hostname: labels of letters, digits and '-', at most 63 bytes each, 253 in all.
/// A `--network-alias`: a DNS name, as a hostname (what the embedded DNS answers for).
pub fn validate_alias(s: &str) -> Result<(), ModelError> {
    validate_hostname(s).map_err(|_| ModelError::Alias(s.to_string()))
}

/// A `--dns-option` (resolv.conf `options`): one token such as `ndots:2`, `timeout:1`, `rotate`,
/// `single-request-reopen`: letters, digits and `:._-`, nothing that could start a new line.
pub fn validate_dns_option(s: &str) -> Result<(), ModelError> {
    let ok = !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ModelError::DnsOption(s.to_string()))
    }
}

pub fn validate_hostname(s: &str) -> Result<(), ModelError> {
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if ok {
        Ok(())
    } else {
        Err(ModelError::Hostname(s.to_string()))
    }
}

/// Interface names weft accepts: 1 to 15 bytes (IFNAMSIZ - 1) of `[A-Za-z0-9_-]`. Linux allows
/// more, but a '.' would be read as a separator in sysctl keys and a quote would break nft text.
pub fn validate_ifname(s: &str) -> Result<(), ModelError> {
    let ok = !s.is_empty() && s.len() <= 15 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(ModelError::IfName(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_names() {
        assert!(validate_container_name("web").is_ok());
        assert!(validate_container_name("/web_1.a-b").is_ok());
        assert!(validate_container_name("a").is_err());
        assert!(validate_container_name("-ab").is_err());
        assert!(validate_container_name("a b").is_err());
        assert!(validate_container_name("a/b").is_err());
    }

    #[test]
    fn ifnames() {
        assert!(validate_ifname("weft0").is_ok());
        assert!(validate_ifname("br-0123456789ab").is_ok());
        assert!(validate_ifname("br-0123456789abc").is_err());
        assert!(validate_ifname("a/b").is_err());
        assert!(validate_ifname("").is_err());
        assert!(validate_ifname("br.0").is_err());
        assert!(validate_ifname("br\"0").is_err());
    }

    #[test]
    fn hostnames() {
        assert!(validate_hostname("web-1.example").is_ok());
        assert!(validate_hostname("-web").is_err());
        assert!(validate_hostname("we_b").is_err());
    }

    #[test]
    fn ids_are_64_hex() {
        let a = new_id();
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, new_id());
        assert_eq!(short_id(&a).len(), 12);
    }
}
