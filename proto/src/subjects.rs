//! NATS subjects: `<prefix>.<node>.<category>`, e.g. `nodescope.node-a.net.message`.
//!
//! Publishers build one subject per event from its category; subscribers build wildcard
//! filters for the nodes and categories they want. The prefix is configurable (and may itself
//! contain dots); a node id is a single subject token.

use crate::event::Payload;
use crate::Event;

pub const DEFAULT_PREFIX: &str = "nodescope";

/// What an event is about; the last part of its subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    NetMessage,
    NetConnection,
    Mempool,
    Validation,
    Utxocache,
    CoinSelection,
    Rpc,
    Zmq,
    P2p,
    Connectivity,
    Fleet,
    Extractor,
}

impl Category {
    pub const ALL: &'static [Category] = &[
        Category::NetMessage,
        Category::NetConnection,
        Category::Mempool,
        Category::Validation,
        Category::Utxocache,
        Category::CoinSelection,
        Category::Rpc,
        Category::Zmq,
        Category::P2p,
        Category::Connectivity,
        Category::Fleet,
        Category::Extractor,
    ];

    /// The category's place in [`Category::ALL`]: an index for per-category arrays.
    pub const fn index(self) -> usize {
        self as usize
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Category::NetMessage => "net.message",
            Category::NetConnection => "net.connection",
            Category::Mempool => "mempool",
            Category::Validation => "validation",
            Category::Utxocache => "utxocache",
            Category::CoinSelection => "coin_selection",
            Category::Rpc => "rpc",
            Category::Zmq => "zmq",
            Category::P2p => "p2p",
            Category::Connectivity => "connectivity",
            Category::Fleet => "fleet",
            Category::Extractor => "extractor",
        }
    }

    pub fn of(payload: &Payload) -> Category {
        use Payload as P;
        match payload {
            P::InboundMessage(_) | P::OutboundMessage(_) => Category::NetMessage,
            P::InboundConnection(_)
            | P::OutboundConnection(_)
            | P::EvictedInboundConnection(_)
            | P::MisbehavingConnection(_)
            | P::ClosedConnection(_) => Category::NetConnection,
            P::BlockConnected(_) => Category::Validation,
            P::UtxocacheFlush(_)
            | P::UtxocacheAdd(_)
            | P::UtxocacheSpent(_)
            | P::UtxocacheUncache(_) => Category::Utxocache,
            P::SelectedCoins(_)
            | P::NormalCreateTxInternal(_)
            | P::AttemptingApsCreateTx(_)
            | P::ApsCreateTxInternal(_) => Category::CoinSelection,
            P::MempoolAdded(_)
            | P::MempoolRemoved(_)
            | P::MempoolReplaced(_)
            | P::MempoolRejected(_) => Category::Mempool,
            P::ConnectivityCheck(_) => Category::Connectivity,
            P::RpcCall(_) => Category::Rpc,
            P::ZmqNotification(_) => Category::Zmq,
            P::PeerConnection(_) | P::PeerMessage(_) | P::PeerPing(_) => Category::P2p,
            P::BlockPropagation(_) | P::TxPropagation(_) | P::Reorg(_) | P::FleetState(_) => {
                Category::Fleet
            }
            P::ExtractorStats(_) => Category::Extractor,
        }
    }
}

/// The sequence numbers of one stream of events (a node's events of one extractor run): per
/// category, from 0 without holes, so that a consumer of one category sees any jump as a loss.
#[derive(Debug, Clone, Default)]
pub struct Sequences([u64; Category::ALL.len()]);

impl Sequences {
    /// The number of the next event of `category`.
    pub fn next(&mut self, category: Category) -> u64 {
        let next = &mut self.0[category.index()];
        *next += 1;
        *next - 1
    }

    /// Skips `count` numbers of `category`, as lost events would.
    pub fn skip(&mut self, category: Category, count: u64) {
        self.0[category.index()] += count;
    }
}

impl std::fmt::Display for Category {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Category {
    type Err = SubjectError;

    fn from_str(text: &str) -> Result<Category, SubjectError> {
        Category::ALL
            .iter()
            .copied()
            .find(|c| c.as_str() == text)
            .ok_or_else(|| SubjectError::UnknownCategory(text.to_string()))
    }
}

impl Event {
    /// The category of the event's payload; `None` for an event without one.
    pub fn category(&self) -> Option<Category> {
        self.payload.as_ref().map(Category::of)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    #[error("node id {0:?} cannot be a NATS subject token: use letters, digits, '-' and '_' (no dots, spaces, '*' or '>')")]
    BadNodeId(String),
    #[error("subject prefix {0:?} is not valid: dot-separated tokens without spaces, '*' or '>'")]
    BadPrefix(String),
    #[error("unknown category {0:?}: use one of net.message, net.connection, mempool, validation, utxocache, coin_selection, rpc, zmq, p2p, connectivity, fleet, extractor")]
    UnknownCategory(String),
}

fn valid_token(token: &str) -> bool {
    !token.is_empty()
        && token
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && !matches!(c, '.' | '*' | '>'))
}

pub fn check_node_id(node: &str) -> Result<(), SubjectError> {
    if valid_token(node) {
        Ok(())
    } else {
        Err(SubjectError::BadNodeId(node.to_string()))
    }
}

pub fn check_prefix(prefix: &str) -> Result<(), SubjectError> {
    if prefix.split('.').all(valid_token) {
        Ok(())
    } else {
        Err(SubjectError::BadPrefix(prefix.to_string()))
    }
}

/// The subject a publisher sends an event of `category` about `node` on.
pub fn subject(prefix: &str, node: &str, category: Category) -> Result<String, SubjectError> {
    check_prefix(prefix)?;
    check_node_id(node)?;
    Ok(format!("{prefix}.{node}.{category}"))
}

/// The node and category of a subject under `prefix`, if it is one of ours.
pub fn parse<'a>(prefix: &str, subject: &'a str) -> Option<(&'a str, Category)> {
    let rest = subject.strip_prefix(prefix)?.strip_prefix('.')?;
    let (node, category) = rest.split_once('.')?;
    if !valid_token(node) {
        return None;
    }
    Some((node, category.parse().ok()?))
}

/// The subscription filters covering `nodes` (all when empty) × `categories` (all when empty).
pub fn filters(
    prefix: &str,
    nodes: &[String],
    categories: &[Category],
) -> Result<Vec<String>, SubjectError> {
    check_prefix(prefix)?;
    for node in nodes {
        check_node_id(node)?;
    }
    let node_tokens: Vec<&str> = if nodes.is_empty() {
        vec!["*"]
    } else {
        nodes.iter().map(String::as_str).collect()
    };
    let mut filters = Vec::new();
    for node in node_tokens {
        if categories.is_empty() {
            filters.push(format!("{prefix}.{node}.>"));
        } else {
            filters.extend(
                categories
                    .iter()
                    .map(|category| format!("{prefix}.{node}.{category}")),
            );
        }
    }
    Ok(filters)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_round_trip_for_every_category() {
        for (index, category) in Category::ALL.iter().enumerate() {
            assert_eq!(category.index(), index, "ALL is in declaration order");
        }
        for category in Category::ALL {
            let subject = subject("nodescope", "node-a", *category).unwrap();
            assert_eq!(parse("nodescope", &subject), Some(("node-a", *category)));
        }
        assert_eq!(
            subject("org.acme", "n1", Category::NetMessage).unwrap(),
            "org.acme.n1.net.message"
        );
        assert_eq!(
            parse("org.acme", "org.acme.n1.net.message"),
            Some(("n1", Category::NetMessage))
        );
    }

    #[test]
    fn foreign_or_malformed_subjects_are_not_ours() {
        assert_eq!(parse("nodescope", "other.n1.mempool"), None);
        assert_eq!(parse("nodescope", "nodescopex.n1.mempool"), None);
        assert_eq!(parse("nodescope", "nodescope.n1.net.unknown"), None);
        assert_eq!(parse("nodescope", "nodescope.n1"), None);
    }

    #[test]
    fn bad_node_ids_and_prefixes_are_refused_with_the_value() {
        assert_eq!(
            subject("nodescope", "a.b", Category::Mempool),
            Err(SubjectError::BadNodeId("a.b".into()))
        );
        assert!(subject("nodescope", "", Category::Mempool).is_err());
        assert!(subject("nodescope", "node *", Category::Mempool).is_err());
        assert_eq!(
            subject("node scope", "n", Category::Mempool),
            Err(SubjectError::BadPrefix("node scope".into()))
        );
        assert!(subject("nodescope.", "n", Category::Mempool).is_err());
        assert_eq!(
            "mempol".parse::<Category>(),
            Err(SubjectError::UnknownCategory("mempol".into()))
        );
    }

    #[test]
    fn filters_use_wildcards_for_all() {
        assert_eq!(filters("nodescope", &[], &[]).unwrap(), ["nodescope.*.>"]);
        assert_eq!(
            filters("nodescope", &["a".into(), "b".into()], &[Category::Mempool]).unwrap(),
            ["nodescope.a.mempool", "nodescope.b.mempool"]
        );
        assert_eq!(
            filters(
                "nodescope",
                &[],
                &[Category::NetMessage, Category::Validation]
            )
            .unwrap(),
            ["nodescope.*.net.message", "nodescope.*.validation"]
        );
    }
}
