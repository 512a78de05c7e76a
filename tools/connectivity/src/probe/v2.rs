//! Whether the peer speaks BIP324: a second connection on which we start the v2 handshake as
//! initiator (no garbage, no decoys).

use bip324::futures::handshake;
use bip324::io::ProtocolError;
use bip324::Role;
use nodescope_proto::V2Support;
use tokio::io::AsyncWriteExt;

use super::dial::{connect, Recorder};
use super::{secs, Dial, ProbeConfig};

/// The peer's v2 support and why we think so.
pub(super) async fn check(dial: &Dial, config: &ProbeConfig) -> (V2Support, String) {
    let mut stream = match connect(dial, config).await {
        Ok(stream) => stream,
        Err(fail) => return (V2Support::Unknown, format!("second connection: {fail}")),
    };
    let magic = config.magic.to_bytes();
    let (reader, mut writer) = stream.split();
    let mut reader = Recorder::new(reader);
    let attempt = handshake(magic, Role::Initiator, None, None, &mut reader, &mut writer);
    // Only whether it completed matters: drop the session, and with it the borrow of `reader`.
    let result = tokio::time::timeout(config.handshake_timeout, attempt)
        .await
        .map(|done| done.map(drop));
    // A v1-only node that answers at all answers with a v1 frame, whatever bip324 made of it.
    let v1_answer = reader.seen().starts_with(&magic);
    let verdict = match result {
        Ok(Ok(_)) => (
            V2Support::Supported,
            "BIP324 handshake completed".to_string(),
        ),
        _ if v1_answer => (
            V2Support::NotSupported,
            "answered our BIP324 key with v1 bytes".to_string(),
        ),
        Ok(Err(ProtocolError::Io(e, _))) => (
            V2Support::NotSupported,
            format!("closed during the BIP324 handshake ({e})"),
        ),
        Ok(Err(ProtocolError::Internal(e))) => (
            V2Support::NotSupported,
            format!("BIP324 handshake failed: {e}"),
        ),
        Err(_) => (
            V2Support::Unknown,
            format!(
                "BIP324 handshake not done within {}",
                secs(config.handshake_timeout)
            ),
        ),
    };
    let _ = tokio::time::timeout(config.handshake_timeout, stream.shutdown()).await;
    verdict
}
