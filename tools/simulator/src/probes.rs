//! The table of C probe functions a binary hands to the library.
//!
//! Each binary links exactly one of the two static libraries built from `c/tracepoints.c`
//! (`tracepoints_v30` or `tracepoints_legacy`); both export the same 21 symbols, so the `extern`
//! block must live in the binary crate, not here. [`probes!`](crate::probes!) writes it.

use std::ffi::{c_char, c_int, c_uint, CStr};

use extractor_common::{ArgKind, Tracepoint};

/// Which `util/trace.h` the linked probes reproduce.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Flavour {
    /// v29+/v30: one semaphore per tracepoint; probes fire only while it is > 0.
    V30,
    /// v23–v28: no semaphores; every probe always fires.
    Legacy,
}

pub type MessageFn = unsafe extern "C" fn(
    i64,
    *const c_char,
    *const c_char,
    *const c_char,
    usize,
    *const u8,
) -> c_int;
pub type ConnectionFn =
    unsafe extern "C" fn(i64, *const c_char, *const c_char, u32, usize) -> c_int;
pub type PeerGoneFn = unsafe extern "C" fn(i64, *const c_char, *const c_char, u32, i64) -> c_int;
pub type UtxoFn = unsafe extern "C" fn(*const u8, u32, u32, i64, bool) -> c_int;

/// Function pointers to the 20 probe functions plus the semaphore reader, with Core's C types.
#[derive(Copy, Clone)]
pub struct Probes {
    pub flavour: Flavour,
    pub active: unsafe extern "C" fn(c_uint) -> c_int,
    pub net_inbound_message: MessageFn,
    pub net_outbound_message: MessageFn,
    pub net_inbound_connection: ConnectionFn,
    pub net_outbound_connection: ConnectionFn,
    pub net_evicted_inbound_connection: PeerGoneFn,
    pub net_misbehaving_connection: unsafe extern "C" fn(i64, *const c_char) -> c_int,
    pub net_closed_connection: PeerGoneFn,
    pub validation_block_connected:
        unsafe extern "C" fn(*const u8, c_int, usize, c_int, i64, i64) -> c_int,
    pub utxocache_flush: unsafe extern "C" fn(i64, u32, u64, u64, bool) -> c_int,
    pub utxocache_add: UtxoFn,
    pub utxocache_spent: UtxoFn,
    pub utxocache_uncache: UtxoFn,
    pub coin_selection_selected_coins:
        unsafe extern "C" fn(*const c_char, *const c_char, i64, i64, i64) -> c_int,
    pub coin_selection_normal_create_tx_internal:
        unsafe extern "C" fn(*const c_char, bool, i64, i32) -> c_int,
    pub coin_selection_attempting_aps_create_tx: unsafe extern "C" fn(*const c_char) -> c_int,
    pub coin_selection_aps_create_tx_internal:
        unsafe extern "C" fn(*const c_char, bool, bool, i64, i32) -> c_int,
    pub mempool_added: unsafe extern "C" fn(*const u8, i32, i64) -> c_int,
    pub mempool_removed: unsafe extern "C" fn(*const u8, *const c_char, i32, i64, u64) -> c_int,
    pub mempool_replaced:
        unsafe extern "C" fn(*const u8, i32, i64, u64, *const u8, i32, i64, bool) -> c_int,
    pub mempool_rejected: unsafe extern "C" fn(*const u8, *const c_char) -> c_int,
}

/// Declares the C probe functions of static library `$lib` and evaluates to a
/// [`Probes`](crate::probes::Probes) table. Use it in a binary crate only (see module docs).
#[macro_export]
macro_rules! probes {
    ($lib:literal, $flavour:expr) => {{
        use ::std::ffi::{c_char, c_int, c_uint};
        #[link(name = $lib, kind = "static")]
        extern "C" {
            fn nodescope_sim_active(id: c_uint) -> c_int;
            fn nodescope_sim_net_inbound_message(
                peer_id: i64,
                addr: *const c_char,
                conn_type: *const c_char,
                msg_type: *const c_char,
                size: usize,
                data: *const u8,
            ) -> c_int;
            fn nodescope_sim_net_outbound_message(
                peer_id: i64,
                addr: *const c_char,
                conn_type: *const c_char,
                msg_type: *const c_char,
                size: usize,
                data: *const u8,
            ) -> c_int;
            fn nodescope_sim_net_inbound_connection(
                peer_id: i64,
                addr: *const c_char,
                conn_type: *const c_char,
                network: u32,
                inbound_count: usize,
            ) -> c_int;
            fn nodescope_sim_net_outbound_connection(
                peer_id: i64,
                addr: *const c_char,
                conn_type: *const c_char,
                network: u32,
                outbound_count: usize,
            ) -> c_int;
            fn nodescope_sim_net_evicted_inbound_connection(
                peer_id: i64,
                addr: *const c_char,
                conn_type: *const c_char,
                network: u32,
                connected_s: i64,
            ) -> c_int;
            fn nodescope_sim_net_misbehaving_connection(
                peer_id: i64,
                message: *const c_char,
            ) -> c_int;
            fn nodescope_sim_net_closed_connection(
                peer_id: i64,
                addr: *const c_char,
                conn_type: *const c_char,
                network: u32,
                connected_s: i64,
            ) -> c_int;
            fn nodescope_sim_validation_block_connected(
                block_hash: *const u8,
                height: c_int,
                tx_count: usize,
                inputs: c_int,
                sigops_cost: i64,
                duration_ns: i64,
            ) -> c_int;
            fn nodescope_sim_utxocache_flush(
                duration_us: i64,
                mode: u32,
                coins_count: u64,
                coins_mem_usage: u64,
                for_prune: bool,
            ) -> c_int;
            fn nodescope_sim_utxocache_add(
                txid: *const u8,
                index: u32,
                height: u32,
                value: i64,
                is_coinbase: bool,
            ) -> c_int;
            fn nodescope_sim_utxocache_spent(
                txid: *const u8,
                index: u32,
                height: u32,
                value: i64,
                is_coinbase: bool,
            ) -> c_int;
            fn nodescope_sim_utxocache_uncache(
                txid: *const u8,
                index: u32,
                height: u32,
                value: i64,
                is_coinbase: bool,
            ) -> c_int;
            fn nodescope_sim_coin_selection_selected_coins(
                wallet_name: *const c_char,
                algo: *const c_char,
                target: i64,
                waste: i64,
                selected_value: i64,
            ) -> c_int;
            fn nodescope_sim_coin_selection_normal_create_tx_internal(
                wallet_name: *const c_char,
                success: bool,
                fee: i64,
                change_pos: i32,
            ) -> c_int;
            fn nodescope_sim_coin_selection_attempting_aps_create_tx(
                wallet_name: *const c_char,
            ) -> c_int;
            fn nodescope_sim_coin_selection_aps_create_tx_internal(
                wallet_name: *const c_char,
                use_aps: bool,
                success: bool,
                fee: i64,
                change_pos: i32,
            ) -> c_int;
            fn nodescope_sim_mempool_added(txid: *const u8, vsize: i32, fee: i64) -> c_int;
            fn nodescope_sim_mempool_removed(
                txid: *const u8,
                reason: *const c_char,
                vsize: i32,
                fee: i64,
                entry_time: u64,
            ) -> c_int;
            fn nodescope_sim_mempool_replaced(
                replaced_txid: *const u8,
                replaced_vsize: i32,
                replaced_fee: i64,
                replaced_entry_time: u64,
                replacement_hash: *const u8,
                replacement_vsize: i32,
                replacement_fee: i64,
                replaced_with_tx: bool,
            ) -> c_int;
            fn nodescope_sim_mempool_rejected(txid: *const u8, reason: *const c_char) -> c_int;
        }
        $crate::probes::Probes {
            flavour: $flavour,
            active: nodescope_sim_active,
            net_inbound_message: nodescope_sim_net_inbound_message,
            net_outbound_message: nodescope_sim_net_outbound_message,
            net_inbound_connection: nodescope_sim_net_inbound_connection,
            net_outbound_connection: nodescope_sim_net_outbound_connection,
            net_evicted_inbound_connection: nodescope_sim_net_evicted_inbound_connection,
            net_misbehaving_connection: nodescope_sim_net_misbehaving_connection,
            net_closed_connection: nodescope_sim_net_closed_connection,
            validation_block_connected: nodescope_sim_validation_block_connected,
            utxocache_flush: nodescope_sim_utxocache_flush,
            utxocache_add: nodescope_sim_utxocache_add,
            utxocache_spent: nodescope_sim_utxocache_spent,
            utxocache_uncache: nodescope_sim_utxocache_uncache,
            coin_selection_selected_coins: nodescope_sim_coin_selection_selected_coins,
            coin_selection_normal_create_tx_internal:
                nodescope_sim_coin_selection_normal_create_tx_internal,
            coin_selection_attempting_aps_create_tx:
                nodescope_sim_coin_selection_attempting_aps_create_tx,
            coin_selection_aps_create_tx_internal:
                nodescope_sim_coin_selection_aps_create_tx_internal,
            mempool_added: nodescope_sim_mempool_added,
            mempool_removed: nodescope_sim_mempool_removed,
            mempool_replaced: nodescope_sim_mempool_replaced,
            mempool_rejected: nodescope_sim_mempool_rejected,
        }
    }};
}

/// One argument as handed to a probe. Borrowed, so that a reused payload costs nothing per call.
#[derive(Copy, Clone, Debug)]
pub enum Arg<'a> {
    /// Any integer or bool argument; the probe function's C type narrows it (checked).
    Int(i128),
    Str(&'a CStr),
    /// A payload, or a 32-byte hash in internal byte order.
    Bytes(&'a [u8]),
    /// A pointer argument (string, hash or payload) whose value is this raw address, which must
    /// not be readable by the tracer (e.g. 0x10, in the never-mapped first page). Neither the
    /// simulator nor the C probe function dereferences it: only the tracer tries to.
    Unreadable(usize),
}

impl Arg<'_> {
    fn int<T: TryFrom<i128>>(&self) -> T {
        match *self {
            Arg::Int(v) => T::try_from(v)
                .unwrap_or_else(|_| panic!("probe argument {v} out of range for its C type")),
            other => panic!("expected an integer probe argument, got {other:?}"),
        }
    }

    fn flag(&self) -> bool {
        match self.int::<u8>() {
            0 => false,
            1 => true,
            v => panic!("bool probe argument must be 0 or 1, got {v}"),
        }
    }

    fn cstr(&self) -> *const c_char {
        match self {
            Arg::Str(s) => s.as_ptr(),
            Arg::Unreadable(address) => *address as *const c_char,
            other => panic!("expected a string probe argument, got {other:?}"),
        }
    }

    fn ptr(&self) -> *const u8 {
        match self {
            Arg::Bytes(b) => b.as_ptr(),
            Arg::Unreadable(address) => *address as *const u8,
            other => panic!("expected a byte-buffer probe argument, got {other:?}"),
        }
    }

    /// Whether this value can be passed as an argument of kind `kind`.
    pub fn fits(&self, kind: ArgKind) -> bool {
        match (self, kind) {
            (Arg::Int(v), ArgKind::I64) => i64::try_from(*v).is_ok(),
            (Arg::Int(v), ArgKind::U64) => u64::try_from(*v).is_ok(),
            (Arg::Int(v), ArgKind::I32) => i32::try_from(*v).is_ok(),
            (Arg::Int(v), ArgKind::U32) => u32::try_from(*v).is_ok(),
            (Arg::Int(v), ArgKind::Bool) => *v == 0 || *v == 1,
            (Arg::Str(_), ArgKind::CStr) => true,
            (Arg::Bytes(b), ArgKind::Hash32) => b.len() == 32,
            (Arg::Bytes(_), ArgKind::Bytes) => true,
            (Arg::Unreadable(_), ArgKind::CStr | ArgKind::Hash32 | ArgKind::Bytes) => true,
            _ => false,
        }
    }
}

/// Panics unless `args` matches the catalogue's signature for `tp` (count, kinds, ranges, and
/// payload length equal to the preceding size argument; an unreadable payload may claim any
/// size).
pub fn check_args(tp: Tracepoint, args: &[Arg<'_>]) {
    let kinds = tp.args();
    assert_eq!(args.len(), kinds.len(), "{tp}: wrong number of arguments");
    for (i, (arg, kind)) in args.iter().zip(kinds).enumerate() {
        assert!(
            arg.fits(*kind),
            "{tp}: argument {i} {arg:?} is not a {kind:?}"
        );
        if let (ArgKind::Bytes, Arg::Bytes(b), Some(Arg::Int(len))) =
            (kind, arg, i.checked_sub(1).map(|p| args[p]))
        {
            assert_eq!(
                b.len() as i128,
                len,
                "{tp}: payload length != size argument"
            );
        }
    }
}

impl Probes {
    /// Core's `TRACEPOINT_ACTIVE`: is the semaphore > 0 (always true for legacy probes).
    pub fn active(&self, tp: Tracepoint) -> bool {
        // SAFETY: the C function only reads a semaphore; out-of-range ids return 0.
        unsafe { (self.active)(tp as u16 as c_uint) != 0 }
    }

    /// Calls the probe function of `tp`; true if the probe fired.
    pub fn fire(&self, tp: Tracepoint, a: &[Arg<'_>]) -> bool {
        if cfg!(debug_assertions) {
            check_args(tp, a);
        }
        assert_eq!(a.len(), tp.args().len(), "{tp}: wrong number of arguments");
        use Tracepoint as T;
        // SAFETY: every pointer comes from a live `&CStr` / `&[u8]` borrowed for this call or is
        // an `Arg::Unreadable` address nobody here dereferences; the C side only hands them to
        // the probe (a tracer reads them with fault-tolerant reads), and integer conversions are
        // range-checked.
        let fired = unsafe {
            match tp {
                T::NetInboundMessage => (self.net_inbound_message)(
                    a[0].int(),
                    a[1].cstr(),
                    a[2].cstr(),
                    a[3].cstr(),
                    a[4].int(),
                    a[5].ptr(),
                ),
                T::NetOutboundMessage => (self.net_outbound_message)(
                    a[0].int(),
                    a[1].cstr(),
                    a[2].cstr(),
                    a[3].cstr(),
                    a[4].int(),
                    a[5].ptr(),
                ),
                T::NetInboundConnection => (self.net_inbound_connection)(
                    a[0].int(),
                    a[1].cstr(),
                    a[2].cstr(),
                    a[3].int(),
                    a[4].int(),
                ),
                T::NetOutboundConnection => (self.net_outbound_connection)(
                    a[0].int(),
                    a[1].cstr(),
                    a[2].cstr(),
                    a[3].int(),
                    a[4].int(),
                ),
                T::NetEvictedInboundConnection => (self.net_evicted_inbound_connection)(
                    a[0].int(),
                    a[1].cstr(),
                    a[2].cstr(),
                    a[3].int(),
                    a[4].int(),
                ),
                T::NetMisbehavingConnection => {
                    (self.net_misbehaving_connection)(a[0].int(), a[1].cstr())
                }
                T::NetClosedConnection => (self.net_closed_connection)(
                    a[0].int(),
                    a[1].cstr(),
                    a[2].cstr(),
                    a[3].int(),
                    a[4].int(),
                ),
                T::ValidationBlockConnected => (self.validation_block_connected)(
                    a[0].ptr(),
                    a[1].int(),
                    a[2].int(),
                    a[3].int(),
                    a[4].int(),
                    a[5].int(),
                ),
                T::UtxocacheFlush => (self.utxocache_flush)(
                    a[0].int(),
                    a[1].int(),
                    a[2].int(),
                    a[3].int(),
                    a[4].flag(),
                ),
                T::UtxocacheAdd => (self.utxocache_add)(
                    a[0].ptr(),
                    a[1].int(),
                    a[2].int(),
                    a[3].int(),
                    a[4].flag(),
                ),
                T::UtxocacheSpent => (self.utxocache_spent)(
                    a[0].ptr(),
                    a[1].int(),
                    a[2].int(),
                    a[3].int(),
                    a[4].flag(),
                ),
                T::UtxocacheUncache => (self.utxocache_uncache)(
                    a[0].ptr(),
                    a[1].int(),
                    a[2].int(),
                    a[3].int(),
                    a[4].flag(),
                ),
                T::CoinSelectionSelectedCoins => (self.coin_selection_selected_coins)(
                    a[0].cstr(),
                    a[1].cstr(),
                    a[2].int(),
                    a[3].int(),
                    a[4].int(),
                ),
                T::CoinSelectionNormalCreateTxInternal => (self
                    .coin_selection_normal_create_tx_internal)(
                    a[0].cstr(),
                    a[1].flag(),
                    a[2].int(),
                    a[3].int(),
                ),
                T::CoinSelectionAttemptingApsCreateTx => {
                    (self.coin_selection_attempting_aps_create_tx)(a[0].cstr())
                }
                T::CoinSelectionApsCreateTxInternal => {
                    (self.coin_selection_aps_create_tx_internal)(
                        a[0].cstr(),
                        a[1].flag(),
                        a[2].flag(),
                        a[3].int(),
                        a[4].int(),
                    )
                }
                T::MempoolAdded => (self.mempool_added)(a[0].ptr(), a[1].int(), a[2].int()),
                T::MempoolRemoved => (self.mempool_removed)(
                    a[0].ptr(),
                    a[1].cstr(),
                    a[2].int(),
                    a[3].int(),
                    a[4].int(),
                ),
                T::MempoolReplaced => (self.mempool_replaced)(
                    a[0].ptr(),
                    a[1].int(),
                    a[2].int(),
                    a[3].int(),
                    a[4].ptr(),
                    a[5].int(),
                    a[6].int(),
                    a[7].flag(),
                ),
                T::MempoolRejected => (self.mempool_rejected)(a[0].ptr(), a[1].cstr()),
            }
        };
        fired != 0
    }
}
