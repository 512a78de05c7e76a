//! Loopback fakes for the tests and the benchmark: peers that speak Bitcoin P2P (or refuse,
//! stay silent, answer with another magic, send garbage, close at once), each on its own
//! 127.x.y.z address, counting what the checker does to them; and a SOCKS5 proxy that maps
//! names (`.onion`, `.b32.i2p`) to those peers and records what it was asked.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bitcoin::consensus::serialize;
use bitcoin::p2p::address::Address;
use bitcoin::p2p::message_network::VersionMessage;
use bitcoin::p2p::{Magic, ServiceFlags};
use nodescope_proto::p2p::wire::{self, HEADER_LEN};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;

/// What a fake peer does with each connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    /// Reads our version; if its magic is `magic`, answers version (and verack), then holds
    /// the connection, reading, until we close. Any other first frame (a BIP324 key) makes it
    /// close, as a v1-only Bitcoin Core does.
    Bitcoin {
        magic: Magic,
        version: i32,
        services: u64,
        user_agent: String,
        start_height: i32,
        send_verack: bool,
    },
    /// Accepts, reads and discards, never answers.
    BlackHole,
    /// Answers our version with a well-formed version frame of another network.
    WrongMagic { magic: Magic },
    /// Sends these bytes, closes its side, reads until we close.
    Garbage(Vec<u8>),
    /// Sends these bytes, then nothing, reading until we close.
    Stall(Vec<u8>),
    /// Accepts and closes at once.
    CloseAtOnce,
    /// Nothing listens: the address is bound (so no one else takes it) but connections to it
    /// are refused. Nothing is counted.
    Refuse,
}

impl Behaviour {
    /// A Bitcoin Core 30 node of the chain of `magic`, v1 only.
    pub fn bitcoin(magic: Magic) -> Behaviour {
        let services =
            ServiceFlags::NETWORK | ServiceFlags::WITNESS | ServiceFlags::NETWORK_LIMITED;
        Behaviour::Bitcoin {
            magic,
            version: 70016,
            services: services.to_u64(),
            user_agent: "/Satoshi:30.0.0/".to_string(),
            start_height: 100,
            send_verack: true,
        }
    }
}

/// The `i`-th address of the fakes' range: 127.10.0.1, 127.10.0.2, ... (5,000 end at
/// 127.10.19.136).
pub fn loopback(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 10, 0, 1)).wrapping_add(i))
}

/// Raises the soft limit on open files to the hard one (thousands of listeners need it) and
/// returns it.
pub fn raise_fd_limit() -> io::Result<libc::rlim_t> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(io::Error::last_os_error());
        }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(limit.rlim_cur)
}

/// Every accept across a set of fakes, and how many connections are open at once, so a test
/// can check the checker's concurrency and rate limits from what the peers saw.
#[derive(Debug, Default)]
pub struct Tally {
    state: Mutex<TallyState>,
}

#[derive(Debug, Default)]
struct TallyState {
    accepts: Vec<Instant>,
    open: usize,
    max_open: usize,
}

impl Tally {
    fn lock(&self) -> MutexGuard<'_, TallyState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.lock().accepts.len()
    }

    /// When each connection was accepted, in order.
    pub fn accepts(&self) -> Vec<Instant> {
        self.lock().accepts.clone()
    }

    /// Connections open now (accepted, not yet closed by either side).
    pub fn open(&self) -> usize {
        self.lock().open
    }

    /// The most connections open at once so far.
    pub fn max_open(&self) -> usize {
        self.lock().max_open
    }

    /// The most accepts within any `window` (sliding, both ends inclusive).
    pub fn max_accepts_in(&self, window: Duration) -> usize {
        let accepts = self.accepts();
        let mut first = 0;
        let mut most = 0;
        for (last, &at) in accepts.iter().enumerate() {
            while at.duration_since(accepts[first]) > window {
                first += 1;
            }
            most = most.max(last + 1 - first);
        }
        most
    }

    fn opened(self: &Arc<Self>) -> OpenGuard {
        let mut state = self.lock();
        state.accepts.push(Instant::now());
        state.open += 1;
        state.max_open = state.max_open.max(state.open);
        OpenGuard(self.clone())
    }
}

/// One open connection in the [`Tally`], until dropped.
struct OpenGuard(Arc<Tally>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.lock().open -= 1;
    }
}

/// One fake peer of a [`FakePeers`].
#[derive(Debug)]
pub struct FakePeer {
    pub addr: SocketAddr,
    pub behaviour: Behaviour,
    accepted: Arc<AtomicU64>,
}

impl FakePeer {
    /// Connections this peer accepted.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// Fake peers on loopback addresses; dropping it stops them all, open connections included.
pub struct FakePeers {
    peers: Vec<FakePeer>,
    tally: Arc<Tally>,
    _refusing: Vec<Refusing>,
    _stop: watch::Sender<()>,
}

impl FakePeers {
    /// Starts one peer per `(address, behaviour)` on `port` (0: each its own free port).
    /// Raises the open-files limit first. Call from within a tokio runtime.
    pub fn spawn(
        behaviours: impl IntoIterator<Item = (Ipv4Addr, Behaviour)>,
        port: u16,
    ) -> io::Result<FakePeers> {
        raise_fd_limit()?;
        let (stop, stopped) = watch::channel(());
        let tally = Arc::new(Tally::default());
        let (mut peers, mut refusing) = (Vec::new(), Vec::new());
        for (ip, behaviour) in behaviours {
            let addr = SocketAddr::from((ip, port));
            let accepted = Arc::new(AtomicU64::new(0));
            let addr = if behaviour == Behaviour::Refuse {
                let refuser = Refusing::bind(addr)?;
                let addr = refuser.addr();
                refusing.push(refuser);
                addr
            } else {
                let listener = listen(addr)?;
                let addr = listener.local_addr()?;
                let peer = Listening {
                    behaviour: Arc::new(behaviour.clone()),
                    accepted: accepted.clone(),
                    tally: tally.clone(),
                    stopped: stopped.clone(),
                };
                until_stopped(&stopped, peer.run(listener));
                addr
            };
            peers.push(FakePeer {
                addr,
                behaviour,
                accepted,
            });
        }
        Ok(FakePeers {
            peers,
            tally,
            _refusing: refusing,
            _stop: stop,
        })
    }

    pub fn peers(&self) -> &[FakePeer] {
        &self.peers
    }

    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.peers.iter().map(|p| p.addr).collect()
    }

    /// Accepts and open connections across all these peers.
    pub fn tally(&self) -> &Arc<Tally> {
        &self.tally
    }
}

fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Runs `work` until it ends or the owner of the stop channel is dropped.
fn until_stopped(stopped: &watch::Receiver<()>, work: impl Future<Output = ()> + Send + 'static) {
    let mut stopped = stopped.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = work => {}
            _ = stopped.changed() => {}
        }
    });
}

/// A listening fake peer.
struct Listening {
    behaviour: Arc<Behaviour>,
    accepted: Arc<AtomicU64>,
    tally: Arc<Tally>,
    stopped: watch::Receiver<()>,
}

impl Listening {
    async fn run(self, listener: TcpListener) {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, most likely: let some connections close.
                    tracing::warn!(error = %e, "fake peer cannot accept");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            self.accepted.fetch_add(1, Ordering::SeqCst);
            let open = self.tally.opened();
            let behaviour = self.behaviour.clone();
            until_stopped(&self.stopped, async move {
                if let Err(e) = serve(stream, &behaviour).await {
                    tracing::trace!(error = %e, "fake peer connection ended");
                }
                drop(open);
            });
        }
    }
}

async fn serve(mut stream: TcpStream, behaviour: &Behaviour) -> io::Result<()> {
    match behaviour {
        Behaviour::Bitcoin {
            magic,
            version,
            services,
            user_agent,
            start_height,
            send_verack,
        } => {
            let Some(header) = read_version(&mut stream).await? else {
                return Ok(());
            };
            if header[..4] != magic.to_bytes() {
                return Ok(());
            }
            let payload = version_payload(&stream, *version, *services, user_agent, *start_height);
            let mut answer = wire::frame(*magic, "version", &payload);
            if *send_verack {
                answer.extend(wire::frame(*magic, "verack", &[]));
            }
            stream.write_all(&answer).await?;
            drain(&mut stream).await
        }
        Behaviour::BlackHole => drain(&mut stream).await,
        Behaviour::WrongMagic { magic } => {
            if read_version(&mut stream).await?.is_none() {
                return Ok(());
            }
            let payload = version_payload(&stream, 70016, 9, "/Satoshi:30.0.0/", 100);
            stream
                .write_all(&wire::frame(*magic, "version", &payload))
                .await?;
            drain(&mut stream).await
        }
        Behaviour::Garbage(bytes) => {
            stream.write_all(bytes).await?;
            // FIN, and read on: closing with our version unread would send RST, which may
            // destroy the garbage in flight before the checker reads it.
            stream.shutdown().await?;
            drain(&mut stream).await
        }
        Behaviour::Stall(bytes) => {
            stream.write_all(bytes).await?;
            drain(&mut stream).await
        }
        Behaviour::CloseAtOnce | Behaviour::Refuse => Ok(()),
    }
}

/// Reads a v1 `version` frame of any magic and returns its header, or `None` if the first
/// 24 bytes are not one (such as a BIP324 key, whose "length" would be anything).
async fn read_version(stream: &mut TcpStream) -> io::Result<Option<[u8; HEADER_LEN]>> {
    let mut header = [0u8; HEADER_LEN];
    stream.read_exact(&mut header).await?;
    let parsed = wire::parse_header(&header);
    if parsed.command.as_deref() != Ok("version") || parsed.length > 4096 {
        return Ok(None);
    }
    let mut payload = stream.take(u64::from(parsed.length));
    tokio::io::copy(&mut payload, &mut tokio::io::sink()).await?;
    Ok(Some(header))
}

/// Reads and discards until the other side closes.
async fn drain(stream: &mut (impl AsyncRead + Unpin)) -> io::Result<()> {
    tokio::io::copy(stream, &mut tokio::io::sink())
        .await
        .map(drop)
}

fn version_payload(
    stream: &TcpStream,
    version: i32,
    services: u64,
    user_agent: &str,
    start_height: i32,
) -> Vec<u8> {
    let unknown = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
    let address =
        |addr: io::Result<SocketAddr>| Address::new(&addr.unwrap_or(unknown), ServiceFlags::NONE);
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let mut message = VersionMessage::new(
        ServiceFlags::from(services),
        timestamp,
        address(stream.peer_addr()),
        address(stream.local_addr()),
        0x5eed,
        user_agent.to_string(),
        start_height,
    );
    message.version = version as u32;
    message.relay = true;
    serialize(&message)
}

/// A loopback address where nothing listens: the port is bound without listening, so
/// connections are refused and no one else can take it while this lives.
#[derive(Debug)]
pub struct Refusing {
    addr: SocketAddr,
    _socket: TcpSocket,
}

impl Refusing {
    /// On 127.0.0.1, a free port.
    pub fn new() -> io::Result<Refusing> {
        Refusing::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
    }

    pub fn bind(addr: SocketAddr) -> io::Result<Refusing> {
        let socket = TcpSocket::new_v4()?;
        socket.bind(addr)?;
        Ok(Refusing {
            addr: socket.local_addr()?,
            _socket: socket,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// What a client asked the [`Socks5Proxy`] to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocksTarget {
    /// ATYP 3: a name, unresolved.
    Domain(String, u16),
    /// ATYP 1 or 4.
    Ip(SocketAddr),
}

/// How the [`Socks5Proxy`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// Names in the map are spliced to their address; unknown names get reply 4 (host
    /// unreachable), IP targets reply 2 (not allowed: names only).
    Splice,
    /// Every CONNECT gets this reply code.
    Reply(u8),
    /// Answers the greeting with an HTTP error.
    NotSocks,
    /// Accepts none of the client's authentication methods (0xFF).
    RequireAuth,
}

/// A no-auth SOCKS5 proxy (CONNECT only) on 127.0.0.1; dropping it stops it.
pub struct Socks5Proxy {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<SocksTarget>>>,
    _stop: watch::Sender<()>,
}

impl Socks5Proxy {
    /// A [`ProxyMode::Splice`] proxy. Call from within a tokio runtime.
    pub fn spawn(map: HashMap<String, SocketAddr>) -> io::Result<Socks5Proxy> {
        Socks5Proxy::spawn_mode(map, ProxyMode::Splice)
    }

    pub fn spawn_mode(
        map: HashMap<String, SocketAddr>,
        mode: ProxyMode,
    ) -> io::Result<Socks5Proxy> {
        let listener = listen(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = watch::channel(());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let proxy = Proxying {
            map: Arc::new(map),
            mode,
            requests: requests.clone(),
        };
        let inner = stopped.clone();
        until_stopped(&stopped, async move {
            while let Ok((client, _)) = listener.accept().await {
                let proxy = proxy.clone();
                until_stopped(&inner, async move {
                    if let Err(e) = proxy.serve(client).await {
                        tracing::trace!(error = %e, "fake SOCKS5 connection ended");
                    }
                });
            }
        });
        Ok(Socks5Proxy {
            addr,
            requests,
            _stop: stop,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every CONNECT target asked for, in order.
    pub fn requests(&self) -> Vec<SocksTarget> {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[derive(Clone)]
struct Proxying {
    map: Arc<HashMap<String, SocketAddr>>,
    mode: ProxyMode,
    requests: Arc<Mutex<Vec<SocksTarget>>>,
}

impl Proxying {
    async fn serve(&self, mut client: TcpStream) -> io::Result<()> {
        let mut greeting = [0u8; 2];
        client.read_exact(&mut greeting).await?;
        let mut methods = [0u8; 255];
        client
            .read_exact(&mut methods[..usize::from(greeting[1])])
            .await?;
        match self.mode {
            ProxyMode::NotSocks => {
                return client.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await
            }
            ProxyMode::RequireAuth => return client.write_all(&[5, 0xff]).await,
            ProxyMode::Splice | ProxyMode::Reply(_) => client.write_all(&[5, 0]).await?,
        }
        let mut request = [0u8; 4];
        client.read_exact(&mut request).await?;
        let target = match request[3] {
            1 => {
                let mut ip = [0u8; 4];
                client.read_exact(&mut ip).await?;
                SocksTarget::Ip(SocketAddr::from((ip, client.read_u16().await?)))
            }
            3 => {
                let mut name = vec![0u8; usize::from(client.read_u8().await?)];
                client.read_exact(&mut name).await?;
                let name = String::from_utf8_lossy(&name).into_owned();
                SocksTarget::Domain(name, client.read_u16().await?)
            }
            4 => {
                let mut ip = [0u8; 16];
                client.read_exact(&mut ip).await?;
                SocksTarget::Ip(SocketAddr::from((
                    Ipv6Addr::from(ip),
                    client.read_u16().await?,
                )))
            }
            _ => return reply(&mut client, 8).await,
        };
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(target.clone());
        let name = match (self.mode, target) {
            (ProxyMode::Reply(code), _) => return reply(&mut client, code).await,
            (_, SocksTarget::Ip(_)) => return reply(&mut client, 2).await,
            (_, SocksTarget::Domain(name, _)) => name,
        };
        let Some(&addr) = self.map.get(&name) else {
            return reply(&mut client, 4).await;
        };
        match TcpStream::connect(addr).await {
            Ok(mut upstream) => {
                reply(&mut client, 0).await?;
                tokio::io::copy_bidirectional(&mut client, &mut upstream)
                    .await
                    .map(drop)
            }
            Err(_) => reply(&mut client, 5).await,
        }
    }
}

/// A CONNECT reply; the bound address (0.0.0.0:0) means nothing to our clients.
async fn reply(client: &mut TcpStream, code: u8) -> io::Result<()> {
    client.write_all(&[5, code, 0, 1, 0, 0, 0, 0, 0, 0]).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_range() {
        assert_eq!(loopback(0), Ipv4Addr::new(127, 10, 0, 1));
        assert_eq!(loopback(4999), Ipv4Addr::new(127, 10, 19, 136));
    }

    #[test]
    fn sliding_window_counts() {
        let tally = Arc::new(Tally::default());
        let start = Instant::now();
        tally.lock().accepts = [0, 10, 20, 30, 100, 105]
            .iter()
            .map(|&s| start + Duration::from_secs(s))
            .collect();
        assert_eq!(tally.max_accepts_in(Duration::from_secs(60)), 4);
        assert_eq!(tally.max_accepts_in(Duration::from_secs(5)), 2);
    }
}
