//! The embedded DNS of user-defined networks. One resolver in the daemon: for each container on a
//! user-defined network, the daemon opens a UDP and a TCP socket *inside the container's network
//! namespace* on 127.0.0.11:53 (Docker's address) and serves them from async tasks. The socket a
//! query arrives on says which container asked, so a container sees exactly the names of the
//! networks it is attached to. Names live in an index snapshot that every change (run, exit,
//! connect, disconnect, rm) replaces: no reload, no dropped query.
//!
//! Answered here: A and AAAA for container names, short ids, network aliases and `name.network`;
//! PTR (in-addr.arpa and ip6.arpa) for their addresses. Anything else is forwarded to the
//! container's upstream servers (`--dns`, then weftd's `--dns`, then the host's resolv.conf, with
//! systemd-resolved's stub replaced by its upstream file as Docker does), with a timeout shorter
//! than a client's; containers only on internal networks get NXDOMAIN instead. Forwarding checks
//! every answer against its query and bounds what is in flight (`forward`). Malformed queries
//! get FORMERR when they have a header, and are dropped otherwise.
//!
//! The parts: [`codec`] (what to answer, from the wire bytes on the fast path), [`Index`] (the
//! names, changed per container as endpoints come and go, never rebuilt whole), `forward` (the
//! upstream servers), `server` (the sockets in each container's namespace) and [`resolv`] (the
//! resolv.conf files around it). The engine tells the index what changed; nothing here reads the
//! engine's state.

mod codec;
mod forward;
mod index;
pub mod resolv;
mod server;

pub use forward::{Checks, Forwarder, Limits, Stats};
pub use index::{ClientView, Endpoint, Index, Resolver};
pub use resolv::{container_resolv, host_resolv, parse_resolv, upstreams, Resolv};
pub use server::{open_sockets, serve};

/// Docker's address of the embedded resolver, inside each container.
pub const RESOLVER: std::net::Ipv4Addr = std::net::Ipv4Addr::new(127, 0, 0, 11);
