//! The resolver's sockets, opened inside each container's network namespace, and the tasks that
//! serve them.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;

use crate::codec::{decide, fast_answer, fit_udp, servfail, Verdict};
use crate::forward::{ClientShare, Forwarder, Stats};
use crate::index::{ClientView, Resolver};
use crate::RESOLVER;

/// How long a failing accept or receive waits before the next (e.g. EMFILE: do not spin).
const ERROR_PAUSE: Duration = Duration::from_millis(20);

/// Opens the resolver's sockets inside the namespace at `netns` (before its `lo` is up, hence
/// IP_FREEBIND). Blocking.
pub fn open_sockets(netns: &Path) -> weft_kernel::Result<(Socket, Socket)> {
    let addr = SocketAddr::new(IpAddr::V4(RESOLVER), 53);
    let err = move |source| weft_kernel::KernelError::Path { op: "bind the resolver at", path: addr.to_string(), source };
    weft_kernel::netns::run_in(netns, move || {
        let mk = |ty, proto| -> std::io::Result<Socket> {
            let s = Socket::new(Domain::IPV4, ty, Some(proto))?;
            s.set_cloexec(true)?;
            s.set_freebind(true)?;
            s.set_reuse_address(true)?;
            s.bind(&addr.into())?;
            s.set_nonblocking(true)?;
            Ok(s)
        };
        let udp = mk(Type::DGRAM, Protocol::UDP).map_err(err)?;
        let tcp = mk(Type::STREAM, Protocol::TCP).and_then(|t| t.listen(128).map(|()| t)).map_err(err)?;
        Ok((udp, tcp))
    })
}

/// Serves `container`'s resolver sockets until the tasks are aborted; its forwards and TCP
/// connections count against `forwarder`'s bounds.
pub fn serve(resolver: Arc<Resolver>, forwarder: &Arc<Forwarder>, container: String, udp: Socket, tcp: Socket) -> std::io::Result<Vec<JoinHandle<()>>> {
    let udp = Arc::new(UdpSocket::from_std(udp.into())?);
    let tcp = TcpListener::from_std(tcp.into())?;
    let share = Arc::new(forwarder.share());
    // Two readers of the UDP socket: both of the runtime's workers can answer.
    let readers: Vec<JoinHandle<()>> =
        (0..UDP_READERS).map(|_| tokio::spawn(udp_loop(udp.clone(), resolver.clone(), share.clone(), container.clone()))).collect();
    let t = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = tcp.accept().await else {
                tokio::time::sleep(ERROR_PAUSE).await;
                continue;
            };
            // Past the bounds the connection is closed at once.
            let Some(admitted) = share.admit_tcp() else { continue };
            let (r, c, share) = (resolver.clone(), container.clone(), share.clone());
            tokio::spawn(async move {
                let _admitted = admitted;
                loop {
                    let Ok(Ok(len)) = tokio::time::timeout(Duration::from_secs(10), s.read_u16()).await else { return };
                    let mut packet = vec![0u8; len as usize];
                    if s.read_exact(&mut packet).await.is_err() {
                        return;
                    }
                    let verdict = decide(&r.read(), &c, &packet);
                    let out = match verdict {
                        Verdict::Reply(r) => Some(r),
                        Verdict::Forward(up) => match share.admit_forward() {
                            Some(_admitted) => share.tcp(&packet, &up).await.or_else(|| servfail(&packet)),
                            None => servfail(&packet),
                        },
                        Verdict::Drop => return,
                    };
                    if let Some(out) = out {
                        if s.write_all(&(out.len() as u16).to_be_bytes()).await.is_err() || s.write_all(&out).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    Ok(readers.into_iter().chain([t]).collect())
}

const UDP_READERS: usize = 2;

async fn udp_loop(udp: Arc<UdpSocket>, resolver: Arc<Resolver>, share: Arc<ClientShare>, container: String) {
    let (mut buf, mut out) = (vec![0u8; 4096], Vec::with_capacity(512));
    // This container's view, looked up again only when the index changes.
    let mut cached: (u64, Option<ClientView>) = (u64::MAX, None);
    loop {
        let Ok((n, peer)) = udp.recv_from(&mut buf).await else {
            tokio::time::sleep(ERROR_PAUSE).await;
            continue;
        };
        let stats = share.stats();
        Stats::add(&stats.queries, 1);
        let verdict = {
            let generation = resolver.generation();
            let idx = resolver.read();
            if generation != cached.0 {
                cached = (generation, idx.clients.get(&container).cloned());
            }
            if cached.1.as_ref().and_then(|client| fast_answer(&idx, client, &buf[..n], &mut out)).is_some() {
                None
            } else {
                Some(decide(&idx, &container, &buf[..n]))
            }
        };
        let Some(verdict) = verdict else {
            Stats::add(&stats.answered, 1);
            let _ = udp.send_to(&out, peer).await;
            continue;
        };
        let packet = buf[..n].to_vec();
        match verdict {
            Verdict::Reply(r) => {
                Stats::add(&stats.answered, 1);
                let _ = udp.send_to(&fit_udp(r, &packet), peer).await;
            }
            Verdict::Forward(up) => match share.admit_forward() {
                Some(admitted) => {
                    let (udp, share) = (udp.clone(), share.clone());
                    tokio::spawn(async move {
                        let answer = share.udp(&packet, &up).await;
                        drop(admitted);
                        if let Some(r) = answer.or_else(|| servfail(&packet)) {
                            let _ = udp.send_to(&r, peer).await;
                        }
                    });
                }
                None => {
                    Stats::add(&stats.refused, 1);
                    if let Some(r) = servfail(&packet) {
                        let _ = udp.send_to(&r, peer).await;
                    }
                }
            },
            Verdict::Drop => {}
        }
    }
}

