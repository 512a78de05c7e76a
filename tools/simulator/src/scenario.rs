//! `regtest-like`: the life of a regtest node seen through its 20 tracepoints, in an order Core
//! produces them. All content derives from the seed; whether a tracepoint is active never changes
//! what is generated, only whether its arguments are built (randomness is drawn eagerly, payloads
//! are serialized lazily).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use bitcoin::hashes::Hash;
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::message_blockdata::Inventory;
use bitcoin::p2p::message_compact_blocks::{CmpctBlock, SendCmpct};
use bitcoin::p2p::message_filter::{CFCheckpt, GetCFCheckpt};
use bitcoin::{bip152, Block, BlockHash, OutPoint, Transaction, Txid};
use extractor_common::Tracepoint as T;

use crate::payloads::{self as p, Rng};
use crate::sim::{bytes, int, string, Sim};

/// `ConnectionTypeAsString()`.
pub mod conn_type {
    pub const INBOUND: &str = "inbound";
    pub const OUTBOUND_FULL_RELAY: &str = "outbound-full-relay";
    pub const MANUAL: &str = "manual";
    pub const BLOCK_RELAY_ONLY: &str = "block-relay-only";
}

/// `enum Network` values as `CNode::ConnectedThroughNetwork()` reports them.
pub mod network {
    pub const UNROUTABLE: u32 = 0;
    pub const IPV4: u32 = 1;
    pub const IPV6: u32 = 2;
    pub const ONION: u32 = 3;
}

/// The longest reject reason Core produces (doc and functional test: 118 chars).
pub const LONGEST_REJECT_REASON: &str = "mandatory-script-verify-flag-failed (Script evaluated without error but finished with a false/empty top stack element)";

const REGTEST_PORT: u16 = 18444;
const START_TIME: i64 = 1_760_000_000;
const START_HEIGHT: u32 = 200;

#[derive(Clone, Debug)]
struct Peer {
    id: i64,
    addr: String,
    sock: SocketAddr,
    conn_type: &'static str,
    network: u32,
    connected_s: i64,
}

#[derive(Clone, Copy, Debug)]
enum Dir {
    In,
    Out,
}

#[derive(Clone, Copy, Debug)]
struct Coin {
    height: u32,
    value: u64,
    coinbase: bool,
}

#[derive(Clone, Debug)]
struct MempoolEntry {
    tx: Transaction,
    vsize: i32,
    fee: i64,
    entry_time: u64,
}

/// Deterministic per-seed content that is too expensive to rebuild on every repeat.
pub struct Fixtures {
    /// A block of exactly 4,000,000 serialized bytes, served to a peer from "disk".
    big_block: Block,
}

impl Fixtures {
    pub fn new(seed: u64) -> Fixtures {
        let mut rng = Rng::new(seed ^ 0xb16_b10c);
        let funding = OutPoint {
            txid: Txid::from_byte_array(rng.array()),
            vout: 0,
        };
        let prev = BlockHash::from_byte_array(rng.array());
        let big_block =
            p::max_size_block(&mut rng, prev, 150, (START_TIME - 40_000) as u32, funding);
        Fixtures { big_block }
    }
}

struct Scenario<'s, 'p> {
    sim: &'s mut Sim<'p>,
    fixtures: &'s Fixtures,
    rng: Rng,
    now: i64,
    next_peer_id: i64,
    inbound: usize,
    outbound: usize,
    tip: BlockHash,
    height: u32,
    utxos: BTreeMap<OutPoint, Coin>,
    funding: Vec<OutPoint>,
    mempool: BTreeMap<Txid, MempoolEntry>,
    /// The last connected block and the coins it spent, to disconnect it in the reorg.
    last_block: Option<(Block, Vec<(OutPoint, Coin)>)>,
}

/// Runs the scenario once. `run` (0-based repetition) keeps peer ids increasing across repeats
/// like a long-running node, and varies the content.
pub fn regtest_like(sim: &mut Sim<'_>, fixtures: &Fixtures, seed: u64, run: u64) {
    let mut rng = Rng::new(seed.wrapping_add(run.wrapping_mul(0x51_7cc1_b727_220a)));
    let tip = BlockHash::from_byte_array(rng.array());
    let mut s = Scenario {
        sim,
        fixtures,
        rng,
        now: START_TIME + run as i64 * 3_600,
        next_peer_id: run as i64 * 5,
        inbound: 0,
        outbound: 0,
        tip,
        height: START_HEIGHT,
        utxos: BTreeMap::new(),
        funding: Vec::new(),
        mempool: BTreeMap::new(),
        last_block: None,
    };
    s.fund();
    s.play();
}

impl Scenario<'_, '_> {
    /// Mature coinbase outputs from earlier blocks, already in the UTXO set.
    fn fund(&mut self) {
        for h in 1..=24u32 {
            let op = OutPoint {
                txid: Txid::from_byte_array(self.rng.array()),
                vout: 0,
            };
            self.utxos.insert(
                op,
                Coin {
                    height: h,
                    value: 5_000_000_000,
                    coinbase: true,
                },
            );
            self.funding.push(op);
        }
    }

    fn play(&mut self) {
        // --- connections and handshakes ---
        let p0 = self.connect(
            format!("127.0.0.1:{REGTEST_PORT}"),
            SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, REGTEST_PORT)),
            conn_type::MANUAL,
            network::UNROUTABLE,
        );
        self.handshake(&p0);
        let port = self.rng.range(40_000, 60_999) as u16;
        let p1 = self.connect(
            format!("127.0.0.1:{port}"),
            SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)),
            conn_type::INBOUND,
            network::UNROUTABLE,
        );
        self.handshake(&p1);
        let onion = self.onion_v3();
        let p2 = self.connect(
            format!("{onion}:{REGTEST_PORT}"),
            // Tor peers are reached through the local SOCKS5 proxy.
            SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9050)),
            conn_type::OUTBOUND_FULL_RELAY,
            network::ONION,
        );
        self.handshake(&p2);

        // --- address relay and compact filters ---
        let t = self.now as u32;
        self.msg(Dir::In, &p2, move |r| p::addrv2(r, 10, t));
        self.msg(Dir::Out, &p1, move |r| p::addr(r, 23, t));
        let stop_hash = self.tip;
        self.msg(Dir::In, &p1, move |_| {
            NetworkMessage::GetCFCheckpt(GetCFCheckpt {
                filter_type: 0,
                stop_hash,
            })
        });
        self.msg(Dir::Out, &p1, move |_| {
            NetworkMessage::CFCheckpt(CFCheckpt {
                filter_type: 0,
                stop_hash,
                filter_headers: vec![],
            })
        });

        // --- transaction relay into the mempool ---
        let tx_a = self.new_spend(1, 2, 1_410);
        self.relay_in(&p1, &tx_a);
        self.accept(&tx_a);
        self.announce(&[&p0, &p2], &tx_a);

        self.msg(Dir::In, &p0, |r| p::inv_wtx(r, 28));
        let tx_b = self.new_spend(2, 2, 2_820);
        let tx_c = self.new_spend(1, 1, 1_100);
        let want: Vec<Inventory> = [&tx_b, &tx_c]
            .iter()
            .map(|tx| Inventory::WTx(tx.compute_wtxid()))
            .collect();
        self.msg(Dir::Out, &p0, move |_| NetworkMessage::GetData(want));
        for tx in [&tx_b, &tx_c] {
            let tx = tx.clone();
            self.msg(Dir::In, &p0, move |_| NetworkMessage::Tx(tx));
        }
        self.accept(&tx_b);
        self.accept(&tx_c);

        // RBF bump of tx_a by a single transaction: replaced -> removed(replaced) -> added.
        let tx_a2 = self.rbf(&tx_a, 4_500);
        self.relay_in(&p1, &tx_a2);
        self.replace(&[tx_a.compute_txid()], &[&tx_a2]);

        // 1p1c package (parent + child) replacing tx_c: replacement hash is the package hash.
        let parent = self.conflicting(&tx_c, 200);
        let child_in = OutPoint {
            txid: parent.compute_txid(),
            vout: 0,
        };
        let child_val = parent.output[0].value.to_sat() - 9_000;
        let child = p::spend(&mut self.rng, &[child_in], &[child_val]);
        for tx in [&parent, &child] {
            let tx = (*tx).clone();
            self.msg(Dir::In, &p0, move |_| NetworkMessage::Tx(tx));
        }
        self.replace(&[tx_c.compute_txid()], &[&parent, &child]);

        // Rejections; coins fetched for a failed acceptance are uncached first, as in ATMP.
        let low_fee = self.conflicting(&tx_b, 10);
        self.relay_in(&p1, &low_fee);
        self.reject(&low_fee, "insufficient fee", true);
        let bad_script = self.new_spend(1, 1, 1_000);
        self.relay_in(&p0, &bad_script);
        self.reject(&bad_script, LONGEST_REJECT_REASON, true);
        // Consensus failure from a manual peer: Misbehaving with an empty message, no disconnect.
        self.misbehaving(&p0, "");
        let orphanish = p::spend(
            &mut self.rng,
            &[OutPoint {
                txid: Txid::from_byte_array([0x42; 32]),
                vout: 3,
            }],
            &[90_000],
        );
        self.relay_in(&p2, &orphanish);
        self.reject(&orphanish, "bad-txns-inputs-missingorspent", false);

        // --- the wallet sends (default wallet "" and a named wallet) ---
        let w1 = self.wallet_send("", ("bnb", "knapsack"), false, 10_000_000);
        self.announce(&[&p0, &p1, &p2], &w1);
        let w2 = self.wallet_send("alice", ("srd", "cg"), true, 25_000_000);
        self.announce(&[&p0, &p1, &p2], &w2);
        // bumpfee: inputs are preselected, so both selections report `manual`.
        let w1b = self.rbf(&w1, 3_000);
        self.coin_selection("", ("manual", "manual"), false, &w1b);
        self.replace(&[w1.compute_txid()], &[&w1b]);
        self.announce(&[&p0, &p1, &p2], &w1b);

        // Mempool limits after a new acceptance: expiry, then trimming the lowest feerate.
        let tx_low = self.new_spend(1, 1, 300);
        self.relay_in(&p1, &tx_low);
        self.accept(&tx_low);
        let tx_s = self.new_spend(1, 2, 3_000);
        self.relay_in(&p2, &tx_s);
        self.accept(&tx_s);
        self.remove(&tx_b.compute_txid(), "expiry");
        self.remove(&tx_low.compute_txid(), "sizelimit");

        // --- a block arrives as a compact block and is connected; it double-spends tx_s ---
        let mut entries: Vec<&MempoolEntry> = self.mempool.values().collect();
        entries.sort_by_key(|e| e.entry_time);
        let s_txid = tx_s.compute_txid();
        let mut block_txs: Vec<Transaction> = entries
            .iter()
            .filter(|e| e.tx.compute_txid() != s_txid)
            .map(|e| e.tx.clone())
            .collect();
        block_txs.push(self.conflicting(&tx_s, 7_000));
        let b1 = self.new_block(block_txs);
        let cmpct = b1.clone();
        let nonce = self.rng.next_u64();
        self.msg(Dir::In, &p0, move |_| {
            let compact_block = bip152::HeaderAndShortIds::from_block(&cmpct, nonce, 2, &[])
                .expect("version 2 compact block");
            NetworkMessage::CmpctBlock(CmpctBlock { compact_block })
        });
        self.connect_block(&b1);
        self.relay_block(&[&p1], &[&p2], &b1);
        self.flush(1, false);

        // --- a full block from the onion peer ---
        let tx_d = self.new_spend(1, 2, 1_500);
        self.relay_in(&p1, &tx_d);
        self.accept(&tx_d);
        let b2 = self.new_block(vec![tx_d.clone()]);
        let full = b2.clone();
        self.msg(Dir::Out, &p2, {
            let h = b2.block_hash();
            move |_| NetworkMessage::GetData(vec![Inventory::WitnessBlock(h)])
        });
        self.msg(Dir::In, &p2, move |_| NetworkMessage::Block(full));
        self.connect_block(&b2);
        self.relay_block(&[&p1], &[&p0], &b2);
        self.flush(2, false);

        // --- a one-block reorg: b2 is replaced by b2' + b3' from the manual peer ---
        self.disconnect_last_block();
        // The disconnected block's tx goes back to the mempool, then removeForReorg drops it.
        self.accept(&tx_d);
        self.remove(&tx_d.compute_txid(), "reorg");
        let b2x = self.new_block(vec![]);
        let b3x_tx = self.new_spend(1, 2, 2_000);
        let hdrs = vec![b2x.header];
        self.msg(Dir::In, &p0, move |_| NetworkMessage::Headers(hdrs));
        let b = b2x.clone();
        self.msg(Dir::In, &p0, move |_| NetworkMessage::Block(b));
        self.connect_block(&b2x);
        let b3x = self.new_block(vec![b3x_tx]);
        let b = b3x.clone();
        self.msg(Dir::In, &p0, move |_| NetworkMessage::Block(b));
        self.connect_block(&b3x);
        self.relay_block(&[&p1], &[&p2], &b3x);
        self.flush(0, true);

        // --- an old block served from disk: exactly 4,000,000 bytes ---
        let big_hash = self.fixtures.big_block.block_hash();
        self.msg(Dir::In, &p1, move |_| {
            NetworkMessage::GetData(vec![Inventory::WitnessBlock(big_hash)])
        });
        let fixtures = self.fixtures;
        self.msg(Dir::Out, &p1, move |_| {
            NetworkMessage::Block(fixtures.big_block.clone())
        });

        // --- inbound slots full: p3 is evicted for p4, which then floods addr ---
        let port = self.rng.range(40_000, 60_999) as u16;
        let v6 = std::net::Ipv6Addr::new(0x2a01, 0x4f8, 0xc17, 0x1ee, 0, 0, 0, 5);
        let p3 = self.connect(
            format!("[{v6}]:{port}"),
            SocketAddr::new(v6.into(), port),
            conn_type::INBOUND,
            network::IPV6,
        );
        self.handshake(&p3);
        let port = self.rng.range(40_000, 60_999) as u16;
        let v4 = Ipv4Addr::new(93, 184, 216, 34);
        self.emit_peer(T::NetEvictedInboundConnection, &p3);
        let p4 = self.connect(
            format!("{v4}:{port}"),
            SocketAddr::V4(SocketAddrV4::new(v4, port)),
            conn_type::INBOUND,
            network::IPV4,
        );
        self.close(&p3);
        self.msg(Dir::In, &p4, |r| {
            p::version_message(
                r,
                SocketAddr::V4(SocketAddrV4::new(v4, 0)),
                SocketAddr::V4(SocketAddrV4::new(v4, port)),
                START_TIME,
                0,
            )
        });
        self.msg(Dir::In, &p4, move |r| p::addr(r, 1001, t));
        self.misbehaving(&p4, "addr message size = 1001");
        self.close(&p4);

        // --- an invalid header from the onion peer: discouraged and disconnected ---
        let bad_hash = BlockHash::from_byte_array(self.rng.array());
        let reason =
            format!("invalid header received: {bad_hash} bad-diffbits (incorrect proof of work)");
        debug_assert_eq!(reason.len(), 128);
        self.misbehaving(&p2, &reason);
        self.close(&p2);

        // --- shutdown: peers are closed, then the coins cache is force-flushed ---
        self.close(&p1);
        self.close(&p0);
        self.flush(3, false);
    }

    fn tick(&mut self, secs: i64) {
        self.now += secs;
    }

    fn onion_v3(&mut self) -> String {
        const B32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
        // Base32 of pubkey(32) || checksum(2) || version(1) = 0x03, so it always ends in 'd'.
        let mut s: String = (0..55)
            .map(|_| B32[(self.rng.next_u64() % 32) as usize] as char)
            .collect();
        s.push('d');
        s + ".onion"
    }

    // ---- net ----

    fn new_peer(
        &mut self,
        addr: String,
        sock: SocketAddr,
        conn_type: &'static str,
        network: u32,
    ) -> Peer {
        let id = self.next_peer_id;
        self.next_peer_id += 1;
        self.tick(1);
        Peer {
            id,
            addr,
            sock,
            conn_type,
            network,
            connected_s: self.now,
        }
    }

    /// Opens a connection; its direction (and tracepoint) follows from the connection type.
    fn connect(
        &mut self,
        addr: String,
        sock: SocketAddr,
        conn_type: &'static str,
        network: u32,
    ) -> Peer {
        let peer = self.new_peer(addr, sock, conn_type, network);
        let (tracepoint, count) = if conn_type == conn_type::INBOUND {
            self.inbound += 1;
            (T::NetInboundConnection, self.inbound)
        } else {
            self.outbound += 1;
            (T::NetOutboundConnection, self.outbound)
        };
        let pr = peer.clone();
        self.sim.emit(tracepoint, move || {
            vec![
                int(pr.id),
                string(&pr.addr),
                string(pr.conn_type),
                int(pr.network),
                int(count as u64),
            ]
        });
        peer
    }

    /// evicted_inbound_connection / closed_connection share their arguments.
    fn emit_peer(&mut self, tp: T, peer: &Peer) {
        let pr = peer.clone();
        self.sim.emit(tp, move || {
            vec![
                int(pr.id),
                string(&pr.addr),
                string(pr.conn_type),
                int(pr.network),
                int(pr.connected_s),
            ]
        });
    }

    fn close(&mut self, peer: &Peer) {
        if peer.conn_type == conn_type::INBOUND {
            self.inbound -= 1;
        } else {
            self.outbound -= 1;
        }
        self.emit_peer(T::NetClosedConnection, peer);
    }

    fn misbehaving(&mut self, peer: &Peer, message: &str) {
        let (id, message) = (peer.id, message.to_string());
        self.sim.emit(T::NetMisbehavingConnection, move || {
            vec![int(id), string(&message)]
        });
    }

    /// One P2P message; `build` gets its own RNG stream so content does not depend on activity.
    fn msg(&mut self, dir: Dir, peer: &Peer, build: impl FnOnce(&mut Rng) -> NetworkMessage) {
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
    fn handshake(&mut self, peer: &Peer) {
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
    fn relay_in(&mut self, peer: &Peer, tx: &Transaction) {
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

    fn announce(&mut self, peers: &[&Peer], tx: &Transaction) {
        let wtxid = tx.compute_wtxid();
        for peer in peers {
            self.msg(Dir::Out, peer, move |_| {
                NetworkMessage::Inv(vec![Inventory::WTx(wtxid)])
            });
        }
    }

    /// High-bandwidth compact-block peers get `cmpctblock`, the others `headers`.
    fn relay_block(&mut self, cmpct_peers: &[&Peer], header_peers: &[&Peer], block: &Block) {
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

    // ---- transactions and the mempool ----

    fn take_funding(&mut self) -> OutPoint {
        self.funding
            .pop()
            .expect("enough funding coins for the scenario")
    }

    /// Spends `n_in` funding coins into `n_out` outputs paying `fee` sat.
    fn new_spend(&mut self, n_in: usize, n_out: u64, fee: u64) -> Transaction {
        let inputs: Vec<OutPoint> = (0..n_in).map(|_| self.take_funding()).collect();
        let total: u64 = inputs.iter().map(|op| self.utxos[op].value).sum();
        let each = (total - fee) / n_out;
        let mut outs = vec![each; n_out as usize];
        outs[0] += total - fee - each * n_out;
        p::spend(&mut self.rng, &inputs, &outs)
    }

    /// Same inputs as `tx`, paying `extra_fee` more (a replacement / double spend).
    fn rbf(&mut self, tx: &Transaction, extra_fee: u64) -> Transaction {
        let inputs: Vec<OutPoint> = tx.input.iter().map(|i| i.previous_output).collect();
        let mut outs: Vec<u64> = tx.output.iter().map(|o| o.value.to_sat()).collect();
        outs[0] -= extra_fee;
        p::spend(&mut self.rng, &inputs, &outs)
    }

    /// Spends only the first input of `tx`, paying `fee`, into one output.
    fn conflicting(&mut self, tx: &Transaction, fee: u64) -> Transaction {
        let op = tx.input[0].previous_output;
        let value = self.utxos.get(&op).map(|c| c.value).unwrap_or(100_000);
        p::spend(&mut self.rng, &[op], &[value - fee])
    }

    fn fee_of(&self, tx: &Transaction) -> i64 {
        let inputs: u64 = tx
            .input
            .iter()
            .map(|i| {
                let op = i.previous_output;
                self.utxos
                    .get(&op)
                    .map(|c| c.value)
                    .or_else(|| {
                        // Spends an unconfirmed output: look it up in the mempool.
                        self.mempool
                            .get(&op.txid)
                            .map(|e| e.tx.output[op.vout as usize].value.to_sat())
                    })
                    .unwrap_or(0)
            })
            .sum();
        inputs as i64
            - tx.output
                .iter()
                .map(|o| o.value.to_sat() as i64)
                .sum::<i64>()
    }

    fn entry(&mut self, tx: &Transaction) -> MempoolEntry {
        self.tick(2);
        MempoolEntry {
            tx: tx.clone(),
            vsize: tx.vsize() as i32,
            fee: self.fee_of(tx),
            entry_time: self.now as u64,
        }
    }

    fn accept(&mut self, tx: &Transaction) {
        let e = self.entry(tx);
        let (txid, vsize, fee) = (tx.compute_txid().to_byte_array(), e.vsize, e.fee);
        self.mempool.insert(tx.compute_txid(), e);
        self.sim.emit(T::MempoolAdded, move || {
            vec![bytes(txid), int(vsize), int(fee)]
        });
    }

    fn remove(&mut self, txid: &Txid, reason: &'static str) {
        let Some(e) = self.mempool.remove(txid) else {
            return;
        };
        let txid = txid.to_byte_array();
        self.sim.emit(T::MempoolRemoved, move || {
            vec![
                bytes(txid),
                string(reason),
                int(e.vsize),
                int(e.fee),
                int(e.entry_time),
            ]
        });
    }

    /// `replaced` per evicted tx, then `removed(replaced)`, then `added` per replacement tx.
    fn replace(&mut self, old: &[Txid], new: &[&Transaction]) {
        // Entered one by one so that a child's fee sees its parent's outputs.
        let mut news = Vec::new();
        for tx in new {
            let e = self.entry(tx);
            self.mempool.insert(tx.compute_txid(), e.clone());
            news.push(e);
        }
        let (hash, with_tx) = match new {
            [one] => (one.compute_txid().to_byte_array(), true),
            many => (p::package_hash(many), false),
        };
        let vsize: i32 = news.iter().map(|e| e.vsize).sum();
        let fee: i64 = news.iter().map(|e| e.fee).sum();
        for txid in old {
            let Some(e) = self.mempool.get(txid).cloned() else {
                continue;
            };
            let old_txid = txid.to_byte_array();
            self.sim.emit(T::MempoolReplaced, move || {
                vec![
                    bytes(old_txid),
                    int(e.vsize),
                    int(e.fee),
                    int(e.entry_time),
                    bytes(hash),
                    int(vsize),
                    int(fee),
                    int(with_tx as u8),
                ]
            });
        }
        for txid in old {
            self.remove(txid, "replaced");
        }
        for e in news {
            let (txid, vsize, fee) = (e.tx.compute_txid().to_byte_array(), e.vsize, e.fee);
            self.sim.emit(T::MempoolAdded, move || {
                vec![bytes(txid), int(vsize), int(fee)]
            });
        }
    }

    fn reject(&mut self, tx: &Transaction, reason: &'static str, uncache: bool) {
        if uncache {
            for input in &tx.input {
                let op = input.previous_output;
                if let Some(c) = self.utxos.get(&op).copied() {
                    self.utxo_event(T::UtxocacheUncache, op, c);
                }
            }
        }
        let txid = tx.compute_txid().to_byte_array();
        self.sim.emit(T::MempoolRejected, move || {
            vec![bytes(txid), string(reason)]
        });
    }

    // ---- wallet ----

    /// `CreateTransaction` with the avoid-partial-spends second attempt; returns the sent tx.
    fn wallet_send(
        &mut self,
        wallet: &str,
        algos: (&'static str, &'static str),
        use_aps: bool,
        amount: u64,
    ) -> Transaction {
        let fee = self.rng.range(1_400, 2_900);
        let inputs = [self.take_funding()];
        let total: u64 = inputs.iter().map(|op| self.utxos[op].value).sum();
        let tx = p::spend(&mut self.rng, &inputs, &[amount, total - amount - fee]);
        self.coin_selection(wallet, algos, use_aps, &tx);
        self.accept(&tx);
        tx
    }

    fn coin_selection(
        &mut self,
        wallet: &str,
        algos: (&'static str, &'static str),
        use_aps: bool,
        tx: &Transaction,
    ) {
        let fee = self.fee_of(tx);
        let target = tx.output[0].value.to_sat() as i64 + fee;
        let selected = tx
            .output
            .iter()
            .map(|o| o.value.to_sat() as i64)
            .sum::<i64>()
            + fee;
        let change_pos: i32 = if tx.output.len() > 1 { 1 } else { -1 };
        let aps_fee = fee + self.rng.range(0, 400) as i64;
        let waste = [
            self.rng.range(0, 3_000) as i64 - 1_000,
            self.rng.range(0, 3_000) as i64 - 1_000,
        ];
        let w = wallet.to_string();
        for (i, algo) in [algos.0, algos.1].into_iter().enumerate() {
            if i == 1 {
                let w = w.clone();
                self.sim
                    .emit(T::CoinSelectionAttemptingApsCreateTx, move || {
                        vec![string(&w)]
                    });
            }
            let (w_sel, waste) = (w.clone(), waste[i]);
            self.sim.emit(T::CoinSelectionSelectedCoins, move || {
                vec![
                    string(&w_sel),
                    string(algo),
                    int(target),
                    int(waste),
                    int(selected),
                ]
            });
            let w = w.clone();
            if i == 0 {
                self.sim
                    .emit(T::CoinSelectionNormalCreateTxInternal, move || {
                        vec![string(&w), int(1u8), int(fee), int(change_pos)]
                    });
            } else {
                self.sim.emit(T::CoinSelectionApsCreateTxInternal, move || {
                    vec![
                        string(&w),
                        int(use_aps as u8),
                        int(1u8),
                        int(aps_fee),
                        int(change_pos),
                    ]
                });
            }
        }
    }

    // ---- blocks and the UTXO cache ----

    fn new_block(&mut self, txs: Vec<Transaction>) -> Block {
        self.tick(600);
        let height = self.height + 1;
        p::block(&mut self.rng, self.tip, height, self.now as u32, txs)
    }

    fn utxo_event(&mut self, tp: T, op: OutPoint, c: Coin) {
        let txid = op.txid.to_byte_array();
        self.sim.emit(tp, move || {
            vec![
                bytes(txid),
                int(op.vout),
                int(c.height),
                int(c.value as i64),
                int(c.coinbase as u8),
            ]
        });
    }

    /// ConnectBlock: spent/add per transaction, block_connected, then the mempool update.
    fn connect_block(&mut self, block: &Block) {
        let height = self.height + 1;
        let mut undo = Vec::new();
        let (mut inputs, mut sigops) = (0i32, 0i64);
        for (i, tx) in block.txdata.iter().enumerate() {
            inputs += tx.input.len() as i32;
            if i > 0 {
                for input in &tx.input {
                    let op = input.previous_output;
                    // Unknown prevouts belong to transactions confirmed before the scenario.
                    let c = self.utxos.remove(&op).unwrap_or(Coin {
                        height: height - 10,
                        value: 100_000,
                        coinbase: false,
                    });
                    undo.push((op, c));
                    self.utxo_event(T::UtxocacheSpent, op, c);
                    sigops += 1; // one P2WPKH CHECKSIG: witness sigops count 1
                }
            }
            let txid = tx.compute_txid();
            for (vout, out) in tx.output.iter().enumerate() {
                if out.script_pubkey.is_op_return() {
                    continue;
                }
                let op = OutPoint {
                    txid,
                    vout: vout as u32,
                };
                let c = Coin {
                    height,
                    value: out.value.to_sat(),
                    coinbase: i == 0,
                };
                self.utxos.insert(op, c);
                self.utxo_event(T::UtxocacheAdd, op, c);
            }
        }
        let hash = block.block_hash().to_byte_array();
        let tx_count = block.txdata.len() as u64;
        let duration_ns = self.rng.range(180_000, 4_000_000) as i64;
        self.sim.emit(T::ValidationBlockConnected, move || {
            vec![
                bytes(hash),
                int(height as i32),
                int(tx_count),
                int(inputs),
                int(sigops),
                int(duration_ns),
            ]
        });
        self.height = height;
        self.tip = block.block_hash();
        self.last_block = Some((block.clone(), undo));

        // removeForBlock: confirmed txs leave as `block`, their double spends as `conflict`.
        let confirmed: Vec<Txid> = block.txdata[1..].iter().map(|t| t.compute_txid()).collect();
        let spent: Vec<OutPoint> = block.txdata[1..]
            .iter()
            .flat_map(|t| t.input.iter().map(|i| i.previous_output))
            .collect();
        for txid in &confirmed {
            self.remove(txid, "block");
        }
        let conflicts: Vec<Txid> = self
            .mempool
            .iter()
            .filter(|(_, e)| {
                e.tx.input
                    .iter()
                    .any(|i| spent.contains(&i.previous_output))
            })
            .map(|(txid, _)| *txid)
            .collect();
        for txid in conflicts {
            self.remove(&txid, "conflict");
        }
    }

    /// DisconnectBlock: outputs are spent, inputs restored from undo data, in reverse order.
    fn disconnect_last_block(&mut self) {
        let Some((block, undo)) = self.last_block.take() else {
            return;
        };
        for tx in block.txdata.iter().rev() {
            let txid = tx.compute_txid();
            for (vout, out) in tx.output.iter().enumerate().rev() {
                if out.script_pubkey.is_op_return() {
                    continue;
                }
                let op = OutPoint {
                    txid,
                    vout: vout as u32,
                };
                if let Some(c) = self.utxos.remove(&op) {
                    self.utxo_event(T::UtxocacheSpent, op, c);
                }
            }
            for input in tx.input.iter().rev() {
                if let Some((op, c)) = undo
                    .iter()
                    .find(|(op, _)| *op == input.previous_output)
                    .copied()
                {
                    self.utxos.insert(op, c);
                    self.utxo_event(T::UtxocacheAdd, op, c);
                }
            }
        }
        self.height -= 1;
        self.tip = block.header.prev_blockhash;
    }

    fn flush(&mut self, mode: u32, for_prune: bool) {
        let duration_us = self.rng.range(150, 25_000) as i64;
        let coins = self.utxos.len() as u64 + self.rng.range(200, 800);
        let mem = coins * 112 + 1_048_576;
        self.sim.emit(T::UtxocacheFlush, move || {
            vec![
                int(duration_us),
                int(mode),
                int(coins),
                int(mem),
                int(for_prune as u8),
            ]
        });
    }
}
