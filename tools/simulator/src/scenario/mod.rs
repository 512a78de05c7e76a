//! `regtest-like`: the life of a regtest node seen through its 20 tracepoints, in an order Core
//! produces them. All content derives from the seed; whether a tracepoint is active never changes
//! what is generated, only whether its arguments are built (randomness is drawn eagerly, payloads
//! are serialized lazily).
//!
//! The story is [`Scenario::play`], here; the steps it is told with live by subsystem: `net`
//! (peers and messages), `mempool`, `wallet` and `chain` (blocks and the UTXO cache).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use bitcoin::hashes::Hash;
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::message_blockdata::Inventory;
use bitcoin::p2p::message_compact_blocks::CmpctBlock;
use bitcoin::p2p::message_filter::{CFCheckpt, GetCFCheckpt};
use bitcoin::{bip152, Block, BlockHash, OutPoint, Transaction, Txid};
use extractor_common::Tracepoint as T;

use crate::payloads::{self as p, Rng};
use crate::sim::Sim;

mod chain;
mod mempool;
mod net;
mod wallet;

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
        self.emit_peer(T::NetEvictedInboundConnection, &p3, p3.connected_s);
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
}
