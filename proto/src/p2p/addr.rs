//! Address text forms (IPv4/IPv6, Tor v2/v3 `.onion`, I2P `.b32.i2p`, CJDNS) and service flag
//! names.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::{AddrNetwork, NetAddress};

/// Known service flags (Core's `ServiceFlags`) and the names nodescope gives them.
const SERVICE_NAMES: &[(u64, &str)] = &[
    (1 << 0, "network"),
    (1 << 1, "getutxos"),
    (1 << 2, "bloom"),
    (1 << 3, "witness"),
    (1 << 6, "compact_filters"),
    (1 << 10, "network_limited"),
    (1 << 11, "p2p_v2"),
];

/// Names of the known service flags set in `services`, lowest bit first.
pub fn service_names(services: u64) -> Vec<String> {
    SERVICE_NAMES
        .iter()
        .filter(|(bit, _)| services & bit != 0)
        .map(|(_, name)| (*name).to_string())
        .collect()
}

/// RFC 4648 base32, lowercase, no padding (Tor and I2P addresses).
pub fn base32(data: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut out = String::with_capacity(data.len().div_ceil(5) * 8);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for &byte in data {
        buffer = (buffer << 8) | byte as u32;
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// Keccak-f[1600] (FIPS 202), for the Tor v3 checksum.
fn keccak_f(state: &mut [u64; 25]) {
    const RC: [u64; 24] = [
        0x0000000000000001,
        0x0000000000008082,
        0x800000000000808a,
        0x8000000080008000,
        0x000000000000808b,
        0x0000000080000001,
        0x8000000080008081,
        0x8000000000008009,
        0x000000000000008a,
        0x0000000000000088,
        0x0000000080008009,
        0x000000008000000a,
        0x000000008000808b,
        0x800000000000008b,
        0x8000000000008089,
        0x8000000000008003,
        0x8000000000008002,
        0x8000000000000080,
        0x000000000000800a,
        0x800000008000000a,
        0x8000000080008081,
        0x8000000000008080,
        0x0000000080000001,
        0x8000000080008008,
    ];
    const ROTC: [u32; 24] = [
        1, 3, 6, 10, 15, 21, 28, 36, 45, 55, 2, 14, 27, 41, 56, 8, 25, 43, 62, 18, 39, 61, 20, 44,
    ];
    const PILN: [usize; 24] = [
        10, 7, 11, 17, 18, 3, 5, 16, 8, 21, 24, 4, 15, 23, 19, 13, 12, 2, 20, 14, 22, 9, 6, 1,
    ];
    for rc in RC {
        let mut c = [0u64; 5];
        for (i, lane) in c.iter_mut().enumerate() {
            *lane = state[i] ^ state[i + 5] ^ state[i + 10] ^ state[i + 15] ^ state[i + 20];
        }
        for i in 0..5 {
            let t = c[(i + 4) % 5] ^ c[(i + 1) % 5].rotate_left(1);
            for j in (0..25).step_by(5) {
                state[j + i] ^= t;
            }
        }
        let mut t = state[1];
        for i in 0..24 {
            let j = PILN[i];
            let next = state[j];
            state[j] = t.rotate_left(ROTC[i]);
            t = next;
        }
        for j in (0..25).step_by(5) {
            let row = [
                state[j],
                state[j + 1],
                state[j + 2],
                state[j + 3],
                state[j + 4],
            ];
            for i in 0..5 {
                state[j + i] ^= !row[(i + 1) % 5] & row[(i + 2) % 5];
            }
        }
        state[0] ^= rc;
    }
}

/// SHA3-256 (FIPS 202).
pub fn sha3_256(data: &[u8]) -> [u8; 32] {
    const RATE: usize = 136;
    let mut state = [0u64; 25];
    let absorb = |state: &mut [u64; 25], block: &[u8; RATE]| {
        for (i, lane) in block.chunks_exact(8).enumerate() {
            let mut word = [0u8; 8];
            word.copy_from_slice(lane);
            state[i] ^= u64::from_le_bytes(word);
        }
        keccak_f(state);
    };
    let mut chunks = data.chunks_exact(RATE);
    for chunk in &mut chunks {
        let mut block = [0u8; RATE];
        block.copy_from_slice(chunk);
        absorb(&mut state, &block);
    }
    let rest = chunks.remainder();
    let mut block = [0u8; RATE];
    block[..rest.len()].copy_from_slice(rest);
    block[rest.len()] ^= 0x06;
    block[RATE - 1] ^= 0x80;
    absorb(&mut state, &block);
    let mut out = [0u8; 32];
    for (i, chunk) in out.chunks_exact_mut(8).enumerate() {
        chunk.copy_from_slice(&state[i].to_le_bytes());
    }
    out
}

/// Tor v3: base32(pubkey | checksum[2] | version 3) + ".onion" (rend-spec-v3).
pub fn torv3(pubkey: &[u8; 32]) -> String {
    let mut preimage = Vec::with_capacity(15 + 32 + 1);
    preimage.extend_from_slice(b".onion checksum");
    preimage.extend_from_slice(pubkey);
    preimage.push(3);
    let checksum = sha3_256(&preimage);
    let mut address = Vec::with_capacity(35);
    address.extend_from_slice(pubkey);
    address.extend_from_slice(&checksum[..2]);
    address.push(3);
    format!("{}.onion", base32(&address))
}

pub fn torv2(id: &[u8]) -> String {
    format!("{}.onion", base32(id))
}

pub fn i2p(hash: &[u8; 32]) -> String {
    format!("{}.b32.i2p", base32(hash))
}

/// IPv6 text; IPv4-mapped addresses (::ffff:a.b.c.d) are shown as IPv4.
pub fn ipv6(addr: &Ipv6Addr) -> String {
    match addr.to_ipv4_mapped() {
        Some(v4) => v4.to_string(),
        None => addr.to_string(),
    }
}

/// Tor v2 addresses embedded in IPv6 by OnionCat (fd87:d87e:eb43::/48).
const ONIONCAT: [u8; 6] = [0xfd, 0x87, 0xd8, 0x7e, 0xeb, 0x43];

/// A legacy 16-byte address (addr, version) as a [`NetAddress`].
pub fn legacy(time: u32, services: u64, octets: [u8; 16], port: u16) -> NetAddress {
    let ip = Ipv6Addr::from(octets);
    let (network, address) = if let Some(v4) = ip.to_ipv4_mapped() {
        (AddrNetwork::Ipv4, v4.to_string())
    } else if octets[..6] == ONIONCAT {
        (AddrNetwork::Torv2, torv2(&octets[6..]))
    } else {
        (AddrNetwork::Ipv6, ip.to_string())
    };
    NetAddress {
        time,
        services,
        service_names: service_names(services),
        network: network as i32,
        network_id: network as u32,
        address,
        port: port as u32,
        address_bytes: Vec::new(),
    }
}

/// The expected address length of a known BIP155 network id.
pub fn bip155_len(network_id: u8) -> Option<(AddrNetwork, usize)> {
    Some(match network_id {
        1 => (AddrNetwork::Ipv4, 4),
        2 => (AddrNetwork::Ipv6, 16),
        3 => (AddrNetwork::Torv2, 10),
        4 => (AddrNetwork::Torv3, 32),
        5 => (AddrNetwork::I2p, 32),
        6 => (AddrNetwork::Cjdns, 16),
        _ => return None,
    })
}

/// The text of a BIP155 address whose length was checked against [`bip155_len`].
pub fn bip155_text(network: AddrNetwork, bytes: &[u8]) -> String {
    let array32 = || {
        let mut a = [0u8; 32];
        a.copy_from_slice(bytes);
        a
    };
    let array16 = || {
        let mut a = [0u8; 16];
        a.copy_from_slice(bytes);
        a
    };
    match network {
        AddrNetwork::Ipv4 => Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).to_string(),
        AddrNetwork::Ipv6 => ipv6(&Ipv6Addr::from(array16())),
        AddrNetwork::Cjdns => Ipv6Addr::from(array16()).to_string(),
        AddrNetwork::Torv2 => torv2(bytes),
        AddrNetwork::Torv3 => torv3(&array32()),
        AddrNetwork::I2p => i2p(&array32()),
        AddrNetwork::Unknown => String::new(),
    }
}
