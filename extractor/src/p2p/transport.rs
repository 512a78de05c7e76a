//! Messages over one connection, v1 or v2 (BIP324): framing, checksums, size limits. The v2
//! ciphers are the `bip324` crate's; the contents mapping and v1 framing are
//! `proto::p2p::wire`'s, shared with the harness and connectivity-check.

use std::time::Duration;

use bip324::futures::{handshake, ProtocolSessionReader};
use bip324::{InboundCipher, OutboundCipher, Role};
use nodescope_proto::p2p::wire::{self, HEADER_LEN, MAX_PAYLOAD};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// Bytes a v1 initiator starts with: the magic and `version` padded to 12 bytes.
fn v1_prefix(magic: [u8; 4]) -> [u8; 16] {
    let mut prefix = [0u8; 16];
    prefix[..4].copy_from_slice(&magic);
    prefix[4..11].copy_from_slice(b"version");
    prefix
}

/// What went wrong on the wire, for the connection's end reason.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("closed by the node")]
    Closed,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The node sent bytes that are not a message: the connection cannot go on.
    #[error("malformed: {0}")]
    Malformed(String),
    #[error("BIP324: {0}")]
    V2(String),
}

type Reader = BufReader<OwnedReadHalf>;
/// The bytes read while telling v1 from v2, then the socket.
type Replayed = tokio::io::Chain<std::io::Cursor<Vec<u8>>, Reader>;

/// One message received: its type and payload, or the bytes of one that could not be read as
/// a message (the frame was well formed, its checksum or type was not).
pub struct Received {
    pub command: String,
    pub payload: Vec<u8>,
    /// The message is not what it claims (bad checksum, a command that is not ASCII): published
    /// marked, the connection goes on as Core's does.
    pub defect: Option<String>,
}

pub enum Connection {
    V1 {
        reader: Replayed,
        writer: OwnedWriteHalf,
        magic: [u8; 4],
    },
    V2 {
        reader: ProtocolSessionReader<Replayed>,
        inbound: InboundCipher,
        outbound: OutboundCipher,
        writer: OwnedWriteHalf,
    },
}

impl Connection {
    /// The node dialled us: v1 if it starts with a v1 version header, else a BIP324 handshake
    /// as responder.
    pub async fn accept(
        stream: TcpStream,
        magic: [u8; 4],
        timeout: Duration,
    ) -> Result<Connection, WireError> {
        let (read, writer) = stream.into_split();
        let mut reader = BufReader::new(read);
        let mut first = vec![0u8; 16];
        tokio::time::timeout(timeout, reader.read_exact(&mut first))
            .await
            .map_err(|_| WireError::Malformed(format!("nothing within {timeout:?} of connecting")))?
            .map_err(eof_is_closed)?;
        let is_v1 = first[..] == v1_prefix(magic);
        let replayed = std::io::Cursor::new(first).chain(reader);
        if is_v1 {
            return Ok(Connection::V1 {
                reader: replayed,
                writer,
                magic,
            });
        }
        Self::v2(replayed, writer, magic, Role::Responder, timeout).await
    }

    /// We dial the node: v2 first when `try_v2`, v1 (on a new connection) if the node does not
    /// speak it.
    /// Also returns our address of the connection.
    pub async fn dial(
        address: &str,
        magic: [u8; 4],
        try_v2: bool,
        timeout: Duration,
    ) -> Result<(Connection, std::net::SocketAddr), WireError> {
        let connect = || async {
            tokio::time::timeout(timeout, TcpStream::connect(address))
                .await
                .map_err(|_| {
                    WireError::Malformed(format!("no connection to {address} within {timeout:?}"))
                })?
                .map_err(WireError::Io)
        };
        if try_v2 {
            let stream = connect().await?;
            let local = stream.local_addr()?;
            let (read, writer) = stream.into_split();
            let replayed = std::io::Cursor::new(Vec::new()).chain(BufReader::new(read));
            match Self::v2(replayed, writer, magic, Role::Initiator, timeout).await {
                Ok(connection) => return Ok((connection, local)),
                Err(e) => tracing::debug!(address, "v2 handshake failed ({e}); trying v1"),
            }
        }
        let stream = connect().await?;
        let local = stream.local_addr()?;
        let (read, writer) = stream.into_split();
        let replayed = std::io::Cursor::new(Vec::new()).chain(BufReader::new(read));
        Ok((
            Connection::V1 {
                reader: replayed,
                writer,
                magic,
            },
            local,
        ))
    }

    async fn v2(
        reader: Replayed,
        mut writer: OwnedWriteHalf,
        magic: [u8; 4],
        role: Role,
        timeout: Duration,
    ) -> Result<Connection, WireError> {
        let (inbound, outbound, reader) = tokio::time::timeout(
            timeout,
            handshake(magic, role, None, None, reader, &mut writer),
        )
        .await
        .map_err(|_| WireError::V2(format!("handshake not done within {timeout:?}")))?
        .map_err(|e| WireError::V2(format!("handshake failed: {e}")))?;
        Ok(Connection::V2 {
            reader,
            inbound,
            outbound,
            writer,
        })
    }

    pub fn transport(&self) -> &'static str {
        match self {
            Connection::V1 { .. } => "v1",
            Connection::V2 { .. } => "v2",
        }
    }

    pub async fn send(&mut self, command: &str, payload: &[u8]) -> Result<(), WireError> {
        match self {
            Connection::V1 { writer, magic, .. } => {
                let frame = wire::frame(bitcoin::p2p::Magic::from_bytes(*magic), command, payload);
                writer.write_all(&frame).await?;
            }
            Connection::V2 {
                outbound, writer, ..
            } => {
                let contents = wire::v2_contents(command, payload)
                    .ok_or_else(|| WireError::Malformed(format!("command {command:?}")))?;
                let packet = outbound.encrypt_to_vec(&contents, bip324::PacketType::Genuine, None);
                writer.write_all(&packet).await?;
            }
        }
        Ok(())
    }

    /// The next message; `Err` only when the connection cannot go on.
    pub async fn receive(&mut self) -> Result<Received, WireError> {
        match self {
            Connection::V1 { reader, magic, .. } => receive_v1(reader, *magic).await,
            Connection::V2 {
                reader, inbound, ..
            } => loop {
                let mut length = [0u8; 3];
                reader
                    .read_exact(&mut length)
                    .await
                    .map_err(eof_is_closed)?;
                let length = inbound.decrypt_packet_len(length);
                if length > MAX_PAYLOAD as usize + 13 + 16 + 1 {
                    return Err(WireError::Malformed(format!(
                        "a v2 packet of {length} bytes"
                    )));
                }
                let mut packet = vec![0u8; length];
                reader
                    .read_exact(&mut packet)
                    .await
                    .map_err(eof_is_closed)?;
                if length < 1 + 16 {
                    return Err(WireError::Malformed(format!(
                        "a v2 packet of {length} bytes"
                    )));
                }
                let mut plain = vec![0u8; length - 16];
                let kind = inbound
                    .decrypt(&packet, &mut plain, None)
                    .map_err(|e| WireError::V2(format!("decrypting: {e}")))?;
                if kind == bip324::PacketType::Decoy {
                    continue;
                }
                // The header byte, then the contents.
                return Ok(match wire::parse_v2_contents(&plain[1..]) {
                    Ok((command, payload)) => Received {
                        command,
                        payload,
                        defect: None,
                    },
                    Err(e) => Received {
                        command: String::new(),
                        payload: plain[1..].to_vec(),
                        defect: Some(e),
                    },
                });
            },
        }
    }
}

async fn receive_v1<R: AsyncRead + Unpin>(
    reader: &mut R,
    magic: [u8; 4],
) -> Result<Received, WireError> {
    let mut header = [0u8; HEADER_LEN];
    reader
        .read_exact(&mut header)
        .await
        .map_err(eof_is_closed)?;
    let header = wire::parse_header(&header);
    if header.magic != magic {
        return Err(WireError::Malformed(format!(
            "{} instead of the node's",
            wire::describe_magic(header.magic)
        )));
    }
    if header.length > MAX_PAYLOAD {
        return Err(WireError::Malformed(format!(
            "a message of {} bytes (most is {MAX_PAYLOAD})",
            header.length
        )));
    }
    let mut payload = vec![0u8; header.length as usize];
    reader
        .read_exact(&mut payload)
        .await
        .map_err(eof_is_closed)?;
    let (command, mut defect) = match header.command {
        Ok(command) => (command, None),
        Err(e) => (String::new(), Some(e)),
    };
    if wire::checksum(&payload) != header.checksum {
        defect.get_or_insert_with(|| "bad checksum".to_string());
    }
    Ok(Received {
        command,
        payload,
        defect,
    })
}

fn eof_is_closed(e: std::io::Error) -> WireError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        WireError::Closed
    } else {
        WireError::Io(e)
    }
}
