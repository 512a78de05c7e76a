//! P2P message decoding (being written).
