//! The userland proxy, in the daemon (no process per port): for `--userland-proxy` and for IPv6
//! host addresses. TCP: accept, connect to the container, splice both ways. UDP: one upstream
//! socket per client address, relayed both ways, dropped after 60 s idle.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use socket2::Socket;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use weft_model::Proto;

const UDP_IDLE: Duration = Duration::from_secs(60);
/// Pause after a failed accept or receive (a persistent error must not spin a worker).
pub(crate) const ERROR_PAUSE: Duration = Duration::from_millis(20);

/// Starts proxying from the reservation socket `hold` to `target`.
pub(crate) fn spawn(proto: Proto, hold: Socket, target: SocketAddr) -> std::io::Result<Option<JoinHandle<()>>> {
    hold.set_nonblocking(true)?;
    match proto {
        Proto::Tcp => {
            hold.listen(1024)?;
            let l = TcpListener::from_std(hold.into())?;
            Ok(Some(tokio::spawn(tcp(l, target))))
        }
        Proto::Udp => {
            let s = UdpSocket::from_std(hold.into())?;
            Ok(Some(tokio::spawn(udp(Arc::new(s), target))))
        }
        Proto::Sctp => Ok(None),
    }
}

async fn tcp(l: TcpListener, target: SocketAddr) {
    loop {
        let Ok((mut client, _)) = l.accept().await else {
            tokio::time::sleep(ERROR_PAUSE).await; // e.g. EMFILE: do not spin
            continue;
        };
        tokio::spawn(async move {
            if let Ok(mut upstream) = TcpStream::connect(target).await {
                let _ = client.set_nodelay(true);
                let _ = upstream.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            }
        });
    }
}

async fn udp(front: Arc<UdpSocket>, target: SocketAddr) {
    let flows: Arc<Mutex<HashMap<SocketAddr, Arc<UdpSocket>>>> = Arc::default();
    // The flows' relays live in this set: aborting this task (unpublish) drops it, which aborts
    // them all and releases the front socket at once.
    let mut relays = tokio::task::JoinSet::new();
    let mut buf = vec![0u8; 65536];
    loop {
        while relays.try_join_next().is_some() {}
        let Ok((n, client)) = front.recv_from(&mut buf).await else {
            tokio::time::sleep(ERROR_PAUSE).await;
            continue;
        };
        let upstream = {
            let mut f = flows.lock().await;
            match f.get(&client) {
                Some(u) => u.clone(),
                None => {
                    let bind: SocketAddr = if target.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().expect("constant");
                    let Ok(u) = UdpSocket::bind(bind).await else { continue };
                    if u.connect(target).await.is_err() {
                        continue;
                    }
                    let u = Arc::new(u);
                    f.insert(client, u.clone());
                    let (u2, front2, flows2) = (u.clone(), front.clone(), flows.clone());
                    relays.spawn(async move {
                        let mut b = vec![0u8; 65536];
                        while let Ok(Ok(n)) = tokio::time::timeout(UDP_IDLE, u2.recv(&mut b)).await {
                            let _ = front2.send_to(&b[..n], client).await;
                        }
                        flows2.lock().await.remove(&client);
                    });
                    u
                }
            }
        };
        let _ = upstream.send(&buf[..n]).await;
    }
}
