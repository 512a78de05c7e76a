//! The catalogue of Bitcoin Core's USDT tracepoints (v30.0: 20 of them; the simulator's tests
//! hold it to the real v30.0 build's notes). Argument kinds are what the C expression passed to the probe is,
//! which fixes the argument's size and signedness in the ELF note.

/// What one tracepoint argument is, as Bitcoin Core passes it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ArgKind {
    I64,
    U64,
    I32,
    U32,
    Bool,
    /// `const char*` to a NUL-terminated string.
    CStr,
    /// Pointer to 32 bytes in internal (little-endian) order: a txid or block hash.
    Hash32,
    /// Pointer to a byte buffer whose length is the previous argument.
    Bytes,
}

impl ArgKind {
    /// Size in bytes and signedness, as they appear in the note's argument spec (`-8@...`).
    pub const fn size_and_sign(self) -> (u8, bool) {
        match self {
            ArgKind::I64 => (8, true),
            ArgKind::U64 | ArgKind::CStr | ArgKind::Hash32 | ArgKind::Bytes => (8, false),
            ArgKind::I32 => (4, true),
            ArgKind::U32 => (4, false),
            ArgKind::Bool => (1, false),
        }
    }
}

macro_rules! tracepoints {
    ($($variant:ident = $provider:literal : $name:literal [$($arg_name:ident : $arg:ident),*];)*) => {
        /// One of Bitcoin Core's tracepoints, `provider:name`.
        #[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u16)]
        pub enum Tracepoint { $($variant),* }

        impl Tracepoint {
            /// Every tracepoint of Bitcoin Core v30.0, in the order of Bitcoin Core's doc/tracing.md.
            pub const ALL: &'static [Tracepoint] = &[$(Tracepoint::$variant),*];

            pub const fn provider(self) -> &'static str {
                match self { $(Tracepoint::$variant => $provider),* }
            }

            pub const fn name(self) -> &'static str {
                match self { $(Tracepoint::$variant => $name),* }
            }

            /// The arguments in order (v30.0 signature).
            pub const fn args(self) -> &'static [ArgKind] {
                match self { $(Tracepoint::$variant => &[$(ArgKind::$arg),*]),* }
            }

            /// The arguments' names, for people (`peer_id`, `addr`, …), in order.
            pub const fn arg_names(self) -> &'static [&'static str] {
                match self { $(Tracepoint::$variant => &[$(stringify!($arg_name)),*]),* }
            }
        }
    };
}

tracepoints! {
    NetInboundMessage = "net":"inbound_message" [peer_id: I64, addr: CStr, conn_type: CStr, msg_type: CStr, size: U64, payload: Bytes];
    NetOutboundMessage = "net":"outbound_message" [peer_id: I64, addr: CStr, conn_type: CStr, msg_type: CStr, size: U64, payload: Bytes];
    NetInboundConnection = "net":"inbound_connection" [peer_id: I64, addr: CStr, conn_type: CStr, network: U32, inbound_count: U64];
    NetOutboundConnection = "net":"outbound_connection" [peer_id: I64, addr: CStr, conn_type: CStr, network: U32, outbound_count: U64];
    NetEvictedInboundConnection = "net":"evicted_inbound_connection" [peer_id: I64, addr: CStr, conn_type: CStr, network: U32, connected_since: I64];
    NetMisbehavingConnection = "net":"misbehaving_connection" [peer_id: I64, message: CStr];
    NetClosedConnection = "net":"closed_connection" [peer_id: I64, addr: CStr, conn_type: CStr, network: U32, connected_since: I64];
    ValidationBlockConnected = "validation":"block_connected" [hash: Hash32, height: I32, transactions: U64, inputs: I32, sigop_cost: I64, duration_ns: I64];
    UtxocacheFlush = "utxocache":"flush" [duration_us: I64, mode: U32, coins_count: U64, coins_mem_usage: U64, for_prune: Bool];
    UtxocacheAdd = "utxocache":"add" [txid: Hash32, vout: U32, height: U32, value: I64, coinbase: Bool];
    UtxocacheSpent = "utxocache":"spent" [txid: Hash32, vout: U32, height: U32, value: I64, coinbase: Bool];
    UtxocacheUncache = "utxocache":"uncache" [txid: Hash32, vout: U32, height: U32, value: I64, coinbase: Bool];
    CoinSelectionSelectedCoins = "coin_selection":"selected_coins" [wallet: CStr, algorithm: CStr, target: I64, waste: I64, selected_value: I64];
    CoinSelectionNormalCreateTxInternal = "coin_selection":"normal_create_tx_internal" [wallet: CStr, success: Bool, fee: I64, change_pos: I32];
    CoinSelectionAttemptingApsCreateTx = "coin_selection":"attempting_aps_create_tx" [wallet: CStr];
    CoinSelectionApsCreateTxInternal = "coin_selection":"aps_create_tx_internal" [wallet: CStr, use_aps: Bool, success: Bool, fee: I64, change_pos: I32];
    MempoolAdded = "mempool":"added" [txid: Hash32, vsize: I32, fee: I64];
    MempoolRemoved = "mempool":"removed" [txid: Hash32, reason: CStr, vsize: I32, fee: I64, entry_time: U64];
    MempoolReplaced = "mempool":"replaced" [replaced_txid: Hash32, replaced_vsize: I32, replaced_fee: I64, replaced_entry_time: U64, replacement_id: Hash32, replacement_vsize: I32, replacement_fee: I64, replaced_with_tx: Bool];
    MempoolRejected = "mempool":"rejected" [txid: Hash32, reason: CStr];
}

impl Tracepoint {
    pub fn from_provider_name(provider: &str, name: &str) -> Option<Tracepoint> {
        Tracepoint::ALL
            .iter()
            .copied()
            .find(|tp| tp.provider() == provider && tp.name() == name)
    }

    pub fn from_index(index: u16) -> Option<Tracepoint> {
        Tracepoint::ALL.get(index as usize).copied()
    }
}

impl core::fmt::Display for Tracepoint {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}:{}", self.provider(), self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_is_complete_and_indexed() {
        assert_eq!(Tracepoint::ALL.len(), 20);
        for (i, tp) in Tracepoint::ALL.iter().enumerate() {
            assert_eq!(*tp as usize, i);
            assert_eq!(Tracepoint::from_index(i as u16), Some(*tp));
            assert_eq!(
                Tracepoint::from_provider_name(tp.provider(), tp.name()),
                Some(*tp)
            );
        }
        assert_eq!(Tracepoint::MempoolReplaced.args().len(), 8);
        for tp in Tracepoint::ALL {
            assert_eq!(tp.args().len(), tp.arg_names().len(), "{tp}");
        }
    }
}
