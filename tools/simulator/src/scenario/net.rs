//! The scenario's peers: connections, the handshake, messages and relay, as `net:*` tracepoints
//! see them.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::message_blockdata::Inventory;
use bitcoin::p2p::message_compact_blocks::{CmpctBlock, SendCmpct};
use bitcoin::{bip152, Block, Transaction};
use extractor_common::Tracepoint as T;

use super::{conn_type, Dir, Peer, Scenario};
use crate::payloads::{self as p, Rng};
use crate::sim::{bytes, int, string};

impl Scenario<'_, '_> {
    /// Opens a connection; its direction (and tracepoint) follows from the connection type.
    pub(super) fn connect(
        &mut self,
        addr: String,
        sock: SocketAddr,
        conn_type: &'static str,
        network: u32,
    ) -> Peer {
        let id = self.next_peer_id;
        self.next_peer_id += 1;
        self.tick(1);
        let peer = Peer {
            id,
            addr,
            sock,
            conn_type,
            network,
            connected_s: self.now,
        };
        let (tracepoint, count) = if conn_type == conn_type::INBOUND {
            self.inbound += 1;
            (T::NetInboundConnection, self.inbound)
        } else {
            self.outbound += 1;
            (T::NetOutboundConnection, self.outbound)
        };
        self.emit_peer(tracepoint, &peer, count as i64);
        peer
    }

    /// The connection tracepoints share their arguments but the last: the count of such
    /// connections for a new one, the time it connected for an evicted or closed one.
    pub(super) fn emit_peer(&mut self, tp: T, peer: &Peer, last: i64) {
        let pr = peer.clone();
        self.sim.emit(tp, move || {
            vec![
                int(pr.id),
                string(&pr.addr),
                string(pr.conn_type),
                int(pr.network),
                int(last),
            ]
        });
    }

    pub(super) fn close(&mut self, peer: &Peer) {
        if peer.conn_type == conn_type::INBOUND {
            self.inbound -= 1;
        } else {
            self.outbound -= 1;
        }
        self.emit_peer(T::NetClosedConnection, peer, peer.connected_s);
    }

    pub(super) fn misbehaving(&mut self, peer: &Peer, message: &str) {
        let (id, message) = (peer.id, message.to_string());
        self.sim.emit(T::NetMisbehavingConnection, move || {
            vec![int(id), string(&message)]
        });
    }

    /// One P2P message; `build` gets its own RNG stream so content does not depend on activity.
    pub(super) fn msg(
        &mut self,
        dir: Dir,
        peer: &Peer,
        build: impl FnOnce(&mut Rng) -> NetworkMessage,
    ) {
        let tp = match dir {
            Dir::In => T::NetInboundMessage,
            Dir::Out => T::NetOutboundMessage,
        };
        let mut rng = Rng::new(self.rng.next_u64());
        let (id, addr, conn_type) = (peer.id, peer.addr.clone(), peer.conn_type);
        self.sim.emit(tp, move || {
            let (msg_type, data) = p::payload(build(&mut rng));
            vec![
                int(id),
                string(&addr),
                string(conn_type),
                string(msg_type),
                int(data.len() as u64),
                bytes(data),
            ]
        });
    }

    /// Version handshake and the messages Core sends right after it.
    pub(super) fn handshake(&mut self, peer: &Peer) {
        let we_initiated = peer.conn_type != conn_type::INBOUND;
        let (now, height) = (self.now, self.height as i32);
        let (us, them) = (
            SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)),
            peer.sock,
        );
        let version_out = move |r: &mut Rng| p::version_message(r, them, us, now, height);
        let version_in = move |r: &mut Rng| p::version_message(r, us, them, now, height);
        let after_version = |s: &mut Self, dir| {
            s.msg(dir, peer, |_| NetworkMessage::WtxidRelay);
            s.msg(dir, peer, |_| NetworkMessage::SendAddrV2);
            s.msg(dir, peer, |_| NetworkMessage::Verack);
        };
        if we_initiated {
            self.msg(Dir::Out, peer, version_out);
            self.msg(Dir::In, peer, version_in);
        } else {
            self.msg(Dir::In, peer, version_in);
            self.msg(Dir::Out, peer, version_out);
        }
        // Core answers a version with wtxidrelay, sendaddrv2, verack.
        after_version(self, Dir::Out);
        after_version(self, Dir::In);
        let ping_out = self.rng.next_u64();
        let ping_in = self.rng.next_u64();
        let locator = vec![self.tip];
        for dir in [Dir::Out, Dir::In] {
            let (ping, locator) = (
                if matches!(dir, Dir::Out) {
                    ping_out
                } else {
                    ping_in
                },
                locator.clone(),
            );
            self.msg(dir, peer, |_| {
                NetworkMessage::SendCmpct(SendCmpct {
                    send_compact: false,
                    version: 2,
                })
            });
            self.msg(dir, peer, move |_| NetworkMessage::Ping(ping));
            self.msg(dir, peer, move |_| p::getheaders(locator));
            self.msg(dir, peer, |_| NetworkMessage::FeeFilter(1_000));
        }
        // Only the side that opened the connection asks for addresses.
        let getaddr_dir = if we_initiated { Dir::Out } else { Dir::In };
        self.msg(getaddr_dir, peer, |_| NetworkMessage::GetAddr);
        self.msg(Dir::In, peer, move |_| NetworkMessage::Pong(ping_out));
        self.msg(Dir::Out, peer, move |_| NetworkMessage::Pong(ping_in));
        self.msg(Dir::Out, peer, |_| NetworkMessage::Headers(vec![]));
        self.msg(Dir::In, peer, |_| NetworkMessage::Headers(vec![]));
    }

    /// inv -> getdata -> tx from `peer`.
    pub(super) fn relay_in(&mut self, peer: &Peer, tx: &Transaction) {
        let wtxid = tx.compute_wtxid();
        self.msg(Dir::In, peer, move |_| {
            NetworkMessage::Inv(vec![Inventory::WTx(wtxid)])
        });
        self.msg(Dir::Out, peer, move |_| {
            NetworkMessage::GetData(vec![Inventory::WTx(wtxid)])
        });
        let tx = tx.clone();
        self.msg(Dir::In, peer, move |_| NetworkMessage::Tx(tx));
    }

    pub(super) fn announce(&mut self, peers: &[&Peer], tx: &Transaction) {
        let wtxid = tx.compute_wtxid();
        for peer in peers {
            self.msg(Dir::Out, peer, move |_| {
                NetworkMessage::Inv(vec![Inventory::WTx(wtxid)])
            });
        }
    }

    /// High-bandwidth compact-block peers get `cmpctblock`, the others `headers`.
    pub(super) fn relay_block(
        &mut self,
        cmpct_peers: &[&Peer],
        header_peers: &[&Peer],
        block: &Block,
    ) {
        for peer in cmpct_peers {
            let (b, nonce) = (block.clone(), self.rng.next_u64());
            self.msg(Dir::Out, peer, move |_| {
                let compact_block =
                    bip152::HeaderAndShortIds::from_block(&b, nonce, 2, &[]).expect("version 2");
                NetworkMessage::CmpctBlock(CmpctBlock { compact_block })
            });
        }
        for peer in header_peers {
            let header = block.header;
            self.msg(Dir::Out, peer, move |_| {
                NetworkMessage::Headers(vec![header])
            });
        }
    }
}
