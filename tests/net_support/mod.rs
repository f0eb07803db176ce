//! Shared helpers of the `net_*` tests: the sample data file and stack builders.

#![allow(dead_code, unreachable_pub)]

use meshprov::crypto::{AppKey, DevKey, NetKey};
use meshprov::net::network::{IvIndex, MemorySeqSource, NetworkConfig, NetworkLayer};
use meshprov::net::transport::{Transport, TransportConfig};
use serde_json::Value;

/// `../shared/vectors/network.json`; a missing file fails the test, never skips it.
pub fn network_vectors() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/vectors/network.json"
    );
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read sample data {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// One case of `network.json` by name.
pub fn case(name: &str) -> Value {
    network_vectors()["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("case {name} missing"))
        .clone()
}

/// Hex field as bytes.
pub fn h(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))).expect("hex")
}

/// Hex field as a number.
pub fn hx(v: &Value) -> u32 {
    u32::from_str_radix(v.as_str().expect("str"), 16).expect("hex number")
}

pub const NET_KEY: [u8; 16] = [
    0x7d, 0xd7, 0x36, 0x4c, 0xd8, 0x42, 0xad, 0x18, 0xc1, 0x7c, 0x2b, 0x82, 0x0c, 0x84, 0xc3, 0xd6,
];

pub fn net_key() -> NetKey {
    NetKey::from_bytes(NET_KEY)
}

pub fn app_key() -> AppKey {
    AppKey::from_bytes([0x63; 16])
}

pub fn dev_key(addr: u16) -> DevKey {
    let mut k = [0x5a; 16];
    k[..2].copy_from_slice(&addr.to_be_bytes());
    DevKey::from_bytes(k)
}

/// A stack on subnet 0 with `elements` as our addresses, the IV Index given, SEQ from 0.
pub fn stack(iv: IvIndex, elements: &[u16]) -> Transport<MemorySeqSource> {
    stack_with(iv, elements, TransportConfig::default())
}

pub fn stack_with(
    iv: IvIndex,
    elements: &[u16],
    config: TransportConfig,
) -> Transport<MemorySeqSource> {
    let mut net = NetworkLayer::new(NetworkConfig::default(), iv, MemorySeqSource::new());
    net.add_subnet(0, &net_key());
    for &e in elements {
        net.add_element(e);
    }
    Transport::new(config, net)
}

pub const IV: IvIndex = IvIndex {
    index: 0x1234_5678,
    update: false,
};

/// A control message to send.
pub fn control(
    net_key_index: u16,
    src: u16,
    dst: u16,
    ttl: Option<u8>,
    opcode: u8,
    params: Vec<u8>,
) -> meshprov::net::transport::ControlSend {
    meshprov::net::transport::ControlSend {
        net_key_index,
        src,
        dst,
        ttl,
        opcode,
        params,
    }
}
