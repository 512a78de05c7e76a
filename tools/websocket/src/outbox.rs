//! What waits to be written to one client: whole frames, shared with the other clients (an
//! event's frame is one buffer for all), written many at a time with one system call each
//! (a vectored write straight from those buffers: no copy per client).

use std::collections::VecDeque;
use std::io::IoSlice;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio_tungstenite::tungstenite::Bytes;

/// Frames given to one system call at most.
const FRAMES_PER_WRITE: usize = 256;

/// Why a client cannot be written to.
#[derive(Debug)]
pub enum Unwritable {
    /// It went away or the connection failed.
    Gone,
    /// A write took nothing within the send timeout.
    Stalled,
}

struct Queued {
    /// What of the frame is still to be written.
    bytes: Bytes,
    event: bool,
}

pub struct Outbox {
    socket: OwnedWriteHalf,
    queued: VecDeque<Queued>,
    send_timeout: Duration,
}

impl Outbox {
    pub fn new(socket: OwnedWriteHalf, send_timeout: Duration) -> Outbox {
        Outbox {
            socket,
            queued: VecDeque::new(),
            send_timeout,
        }
    }

    pub fn push(&mut self, frame: Bytes) {
        self.queued.push_back(Queued {
            bytes: frame,
            event: false,
        });
    }

    /// An event's frame: counted as lost if the client stalls before it is written whole.
    pub fn push_event(&mut self, frame: Bytes) {
        self.queued.push_back(Queued {
            bytes: frame,
            event: true,
        });
    }

    /// Event frames queued and not written whole.
    pub fn unwritten_events(&self) -> u64 {
        self.queued.iter().filter(|q| q.event).count() as u64
    }

    /// Writes everything queued.
    pub async fn write(&mut self) -> Result<(), Unwritable> {
        while !self.queued.is_empty() {
            let mut slices = [IoSlice::new(&[]); FRAMES_PER_WRITE];
            let count = slices
                .iter_mut()
                .zip(&self.queued)
                .map(|(slice, queued)| *slice = IoSlice::new(&queued.bytes))
                .count();
            let write = self.socket.write_vectored(&slices[..count]);
            let mut written = match tokio::time::timeout(self.send_timeout, write).await {
                Ok(Ok(0)) | Ok(Err(_)) => return Err(Unwritable::Gone),
                Ok(Ok(written)) => written,
                Err(_) => return Err(Unwritable::Stalled),
            };
            while written > 0 {
                let front = self
                    .queued
                    .front_mut()
                    .expect("written from what is queued");
                if written < front.bytes.len() {
                    front.bytes = front.bytes.slice(written..);
                    break;
                }
                written -= front.bytes.len();
                self.queued.pop_front();
            }
        }
        Ok(())
    }
}
