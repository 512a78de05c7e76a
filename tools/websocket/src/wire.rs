//! The websocket protocol (RFC 6455) as this server speaks it, no extensions offered, with
//! tungstenite's frame headers. Frames it sends are built whole, header and payload, once: a
//! server does not mask its frames, so an event's frame is the same bytes for every client and
//! is shared by all of them, written straight from one buffer. Frames clients send are unmasked
//! and put together into messages.

use std::io::Cursor;

use tokio_tungstenite::tungstenite::protocol::frame::coding::OpCode;
use tokio_tungstenite::tungstenite::protocol::frame::{Frame, FrameHeader};
use tokio_tungstenite::tungstenite::Bytes;

#[cfg(test)]
const FIN: u8 = 0x80;
#[cfg(test)]
const MASKED: u8 = 0x80;

const CONTINUATION: u8 = 0x0;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xa;

/// The largest message a client may send (they send subscriptions: a few hundred bytes).
pub const MAX_CLIENT_MESSAGE: usize = 64 * 1024;

/// Close codes (RFC 6455 §7.4.1).
pub const NORMAL_CLOSURE: u16 = 1000;
pub const GOING_AWAY: u16 = 1001;
pub const PROTOCOL_ERROR: u16 = 1002;
pub const NOT_UTF8: u16 = 1007;
pub const TOO_BIG: u16 = 1009;

/// A whole unfragmented frame.
fn frame(opcode: u8, payload: &[u8]) -> Bytes {
    let header = FrameHeader {
        is_final: true,
        opcode: OpCode::from(opcode),
        ..FrameHeader::default()
    };
    let frame = Frame::from_payload(header, payload.to_vec().into());
    let mut bytes = Vec::with_capacity(frame.len());
    frame
        .format(&mut bytes)
        .expect("formatting into a Vec does not fail");
    bytes.into()
}

/// A text frame: what every event, state and notice is sent as.
pub fn text(json: &str) -> Bytes {
    frame(TEXT, json.as_bytes())
}

pub fn pong(payload: &[u8]) -> Bytes {
    frame(PONG, payload)
}

/// A close frame; its reason is cut to fit a control frame (125 bytes with the code).
pub fn close(code: u16, reason: &str) -> Bytes {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    frame(CLOSE, &payload)
}

/// What a client sent.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientMessage {
    Text(String),
    /// Not a thing this server reads: ignored.
    Binary,
    Ping(Vec<u8>),
    Pong,
    /// The client closes, with its close code when it gave one.
    Close(Option<u16>),
}

/// Frames that break the protocol: the close code and reason to answer them with.
#[derive(Debug, PartialEq, Eq)]
pub struct Violation {
    pub code: u16,
    pub reason: &'static str,
}

fn violation(code: u16, reason: &'static str) -> Violation {
    Violation { code, reason }
}

/// A client's frames as their bytes arrive, put together into messages.
#[derive(Debug, Default)]
pub struct ClientFrames {
    /// Bytes received and not yet read as a whole frame.
    received: Vec<u8>,
    /// The payload so far of a message sent in fragments, and its opcode.
    fragments: Vec<u8>,
    fragmented: Option<u8>,
}

impl ClientFrames {
    /// Starts with the bytes that came with the upgrade request.
    pub fn new(already_received: &[u8]) -> ClientFrames {
        ClientFrames {
            received: already_received.to_vec(),
            ..ClientFrames::default()
        }
    }

    /// Where to read the next bytes into, with room for them.
    pub fn buffer(&mut self) -> &mut Vec<u8> {
        self.received.reserve(4096);
        &mut self.received
    }

    /// The next whole message received, if there is one.
    pub fn next_message(&mut self) -> Result<Option<ClientMessage>, Violation> {
        while let Some((fin, opcode, payload)) = self.next_frame()? {
            match opcode {
                PING => return Ok(Some(ClientMessage::Ping(payload))),
                PONG => return Ok(Some(ClientMessage::Pong)),
                CLOSE => {
                    let code = payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]));
                    return Ok(Some(ClientMessage::Close(code)));
                }
                TEXT | BINARY if self.fragmented.is_some() => {
                    return Err(violation(
                        PROTOCOL_ERROR,
                        "a message began before the last one ended",
                    ))
                }
                CONTINUATION if self.fragmented.is_none() => {
                    return Err(violation(
                        PROTOCOL_ERROR,
                        "a continuation frame with no message to continue",
                    ))
                }
                CONTINUATION | TEXT | BINARY => {
                    self.fragments.extend_from_slice(&payload);
                    self.fragmented.get_or_insert(opcode);
                    if fin {
                        let message = std::mem::take(&mut self.fragments);
                        return match self.fragmented.take() {
                            Some(TEXT) => String::from_utf8(message)
                                .map(|text| Some(ClientMessage::Text(text)))
                                .map_err(|_| {
                                    violation(NOT_UTF8, "a text message that is not UTF-8")
                                }),
                            _ => Ok(Some(ClientMessage::Binary)),
                        };
                    }
                }
                _ => return Err(violation(PROTOCOL_ERROR, "an unknown opcode")),
            }
        }
        Ok(None)
    }

    /// The next whole frame received: whether it is final, its opcode and its payload unmasked.
    fn next_frame(&mut self) -> Result<Option<(bool, u8, Vec<u8>)>, Violation> {
        let mut cursor = Cursor::new(&self.received[..]);
        let (header, length) = match FrameHeader::parse(&mut cursor) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return Ok(None),
            Err(_) => return Err(violation(PROTOCOL_ERROR, "a malformed frame header")),
        };
        if header.rsv1 || header.rsv2 || header.rsv3 {
            return Err(violation(PROTOCOL_ERROR, "reserved bits set"));
        }
        let Some(mask) = header.mask else {
            return Err(violation(
                PROTOCOL_ERROR,
                "a client's frames must be masked",
            ));
        };
        let (fin, opcode) = (header.is_final, u8::from(header.opcode));
        if opcode & 0x8 != 0 && (!fin || length > 125) {
            return Err(violation(
                PROTOCOL_ERROR,
                "a control frame fragmented or over 125 bytes",
            ));
        }
        if length > (MAX_CLIENT_MESSAGE - self.fragments.len()) as u64 {
            return Err(violation(TOO_BIG, "a message over 64 KiB"));
        }
        let payload_at = cursor.position() as usize;
        let end = payload_at + length as usize;
        if self.received.len() < end {
            return Ok(None);
        }
        let payload = self.received[payload_at..end]
            .iter()
            .zip(mask.iter().cycle())
            .map(|(byte, mask)| byte ^ mask)
            .collect();
        self.received.drain(..end);
        Ok(Some((fin, opcode, payload)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame as a client sends it: masked.
    fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut frame = vec![if fin { FIN } else { 0 } | opcode];
        match payload.len() {
            length @ 0..=125 => frame.push(MASKED | length as u8),
            length => {
                frame.push(MASKED | 126);
                frame.extend_from_slice(&(length as u16).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
        frame
    }

    #[test]
    fn a_server_frame_has_the_shortest_length_that_fits() {
        for (length, header) in [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10)] {
            let frame = text(&"x".repeat(length));
            assert_eq!(frame.len(), header + length, "{length}");
            assert_eq!(frame[0], 0x81);
            let declared = match header {
                2 => frame[1] as usize,
                4 => u16::from_be_bytes([frame[2], frame[3]]) as usize,
                _ => u64::from_be_bytes(frame[2..10].try_into().unwrap()) as usize,
            };
            assert_eq!(declared, length);
        }
        let close = close(GOING_AWAY, &"é".repeat(100));
        assert_eq!(close.len(), 2 + 124, "cut on a character boundary");
        assert_eq!(&close[..4], &[0x88, 124, 0x03, 0xe9]);
    }

    #[test]
    fn client_messages_are_unmasked_and_joined_from_their_fragments() {
        let mut bytes = client_frame(true, TEXT, b"{\"type\":\"subscribe\"}");
        bytes.extend(client_frame(true, PING, b"hi"));
        bytes.extend(client_frame(false, TEXT, "mem".as_bytes()));
        bytes.extend(client_frame(true, PONG, b""));
        bytes.extend(client_frame(true, CONTINUATION, "pool ✓".as_bytes()));
        bytes.extend(client_frame(true, BINARY, &[0; 300]));
        bytes.extend(client_frame(true, CLOSE, &1000u16.to_be_bytes()));
        let mut frames = ClientFrames::new(&[]);
        // Byte by byte: a message is whole only when its last byte arrived.
        let mut messages = Vec::new();
        for byte in bytes {
            frames.buffer().push(byte);
            while let Some(message) = frames.next_message().unwrap() {
                messages.push(message);
            }
        }
        assert_eq!(
            messages,
            [
                ClientMessage::Text("{\"type\":\"subscribe\"}".into()),
                ClientMessage::Ping(b"hi".to_vec()),
                ClientMessage::Pong,
                ClientMessage::Text("mempool ✓".into()),
                ClientMessage::Binary,
                ClientMessage::Close(Some(1000)),
            ]
        );
    }

    #[test]
    fn frames_that_break_the_protocol_are_refused_with_a_reason() {
        let refused = |bytes: Vec<u8>| ClientFrames::new(&bytes).next_message().unwrap_err();
        let mut unmasked = client_frame(true, TEXT, b"x");
        unmasked[1] &= !MASKED;
        assert_eq!(refused(unmasked).code, PROTOCOL_ERROR);
        assert_eq!(refused(client_frame(true, 0x3, b"")).code, PROTOCOL_ERROR);
        assert_eq!(refused(client_frame(false, PING, b"")).code, PROTOCOL_ERROR);
        assert_eq!(
            refused(client_frame(true, CONTINUATION, b"x")).code,
            PROTOCOL_ERROR
        );
        assert_eq!(refused(client_frame(true, TEXT, &[0xff])).code, NOT_UTF8);
        // Too big is refused from its header, before its payload is received.
        let mut big = vec![FIN | TEXT, MASKED | 127];
        big.extend_from_slice(&(MAX_CLIENT_MESSAGE as u64 + 1).to_be_bytes());
        big.extend_from_slice(&[1, 2, 3, 4]);
        assert_eq!(refused(big).code, TOO_BIG);
        let mut two_halves = client_frame(false, TEXT, &[b'x'; 40000]);
        two_halves.extend(client_frame(true, CONTINUATION, &[b'x'; 40000]));
        let mut frames = ClientFrames::new(&two_halves);
        assert_eq!(frames.next_message().unwrap_err().code, TOO_BIG);
    }
}
