//! Shared harness of the `prov_*` tests: a deterministic two-sided loop that moves whole
//! provisioning PDUs between a `Provisioner` and a `Device` (quinn-proto `Pair` style).
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use meshprov::crypto::NetKey;
use meshprov::crypto::ecdh::KeyPair;
use meshprov::crypto::rand_core::{CryptoRng, SeedableRng};
use meshprov::provisioning::{
    Device, DeviceConfig, DeviceEvent, Event, OobValue, Provisioner, ProvisionerConfig,
    ProvisioningParams,
};
use meshprov::time::Instant;
use meshprov::wire::{
    Algorithms, Capabilities, InputOobActions, OobType, OutputOobActions, PublicKeyType,
};
use rand_chacha::ChaCha20Rng;

pub const NET_KEY: [u8; 16] = [
    0xef, 0xb2, 0x25, 0x5e, 0x64, 0x22, 0xd3, 0x30, 0x08, 0x8e, 0x09, 0xbb, 0x01, 0x5e, 0xd7, 0x07,
];

pub fn rng(seed: u64) -> Box<dyn CryptoRng + Send> {
    Box::new(ChaCha20Rng::seed_from_u64(seed))
}

pub fn params() -> ProvisioningParams {
    ProvisioningParams {
        net_key: NetKey::from_bytes(NET_KEY),
        net_key_index: 0x0567,
        flags: 0,
        iv_index: 0x0102_0304,
    }
}

/// Capabilities with both algorithms and nothing else (No OOB only).
pub fn caps() -> Capabilities {
    Capabilities {
        num_elements: 2,
        algorithms: Algorithms::CMAC_AES128 | Algorithms::HMAC_SHA256,
        public_key_type: PublicKeyType::EMPTY,
        oob_type: OobType::EMPTY,
        output_oob_size: 0,
        output_oob_action: OutputOobActions::EMPTY,
        input_oob_size: 0,
        input_oob_action: InputOobActions::EMPTY,
    }
}

pub fn device_config(capabilities: Capabilities) -> DeviceConfig {
    DeviceConfig {
        uuid: [0x11; 16],
        capabilities,
        static_oob: None,
        key_pair: None,
        output_value: None,
        records: Vec::new(),
        records_fault: None,
    }
}

pub fn no_oob_config() -> ProvisionerConfig {
    ProvisionerConfig {
        allow_no_oob: true,
        ..ProvisionerConfig::default()
    }
}

/// What the harness does with a PDU from the device before the provisioner sees it:
/// `(history of provisioner PDUs, device PDU) -> PDU delivered`.
pub type Tamper = Box<dyn FnMut(&[Vec<u8>], Vec<u8>) -> Vec<u8>>;

/// The caller's verdict on the records (`Event::RecordsReceived`): the device certificate's
/// public key, or why it is refused.
pub type CertAnswer = Box<dyn FnMut(&[u8], &[Vec<u8>]) -> Result<[u8; 64], String>>;

/// What the harness does with a PDU from the provisioner before the device sees it.
pub type TamperP2d = Box<dyn FnMut(Vec<u8>) -> Vec<u8>>;

pub struct Pair {
    pub p: Provisioner,
    pub d: Device,
    pub now: Instant,
    pub address: u16,
    /// Every PDU the provisioner sent, in order.
    pub p2d: Vec<Vec<u8>>,
    /// Every PDU the device sent, in order (before tampering).
    pub d2p: Vec<Vec<u8>>,
    pub p_events: Vec<Event>,
    pub d_events: Vec<DeviceEvent>,
    pub tamper: Option<Tamper>,
    /// What the harness does with a PDU from the provisioner before the device sees it.
    pub tamper_p2d: Option<TamperP2d>,
    /// Whether the harness answers NeedUnicastAddress / CommitRequired / OOB prompts.
    pub auto_answer: bool,
    /// How the harness answers RecordsReceived (with `auto_answer`); none: no answer.
    pub cert_answer: Option<CertAnswer>,
    displayed: Option<OobValue>,
    output_pending: bool,
    input_value: Option<OobValue>,
    input_pending: bool,
}

impl Pair {
    pub fn new(p: Provisioner, d: Device) -> Self {
        Pair {
            p,
            d,
            now: Instant::from_millis(1_000),
            address: 0x0b0c,
            p2d: Vec::new(),
            d2p: Vec::new(),
            p_events: Vec::new(),
            d_events: Vec::new(),
            tamper: None,
            tamper_p2d: None,
            auto_answer: true,
            cert_answer: None,
            displayed: None,
            output_pending: false,
            input_value: None,
            input_pending: false,
        }
    }

    pub fn start(&mut self) {
        self.p.start(self.now);
    }

    /// Performs one action; false if there was nothing to do.
    pub fn step(&mut self) -> bool {
        self.now += Duration::from_millis(10);
        if let Some(pdu) = self.p.poll_transmit() {
            self.p2d.push(pdu.clone());
            let pdu = match self.tamper_p2d.as_mut() {
                Some(t) => t(pdu),
                None => pdu,
            };
            self.d.handle_pdu(self.now, &pdu);
            return true;
        }
        if let Some(pdu) = self.d.poll_transmit() {
            self.d2p.push(pdu.clone());
            let pdu = match self.tamper.as_mut() {
                Some(t) => t(&self.p2d, pdu),
                None => pdu,
            };
            self.p.handle_pdu(self.now, &pdu);
            return true;
        }
        if let Some(ev) = self.d.poll_event() {
            match &ev {
                DeviceEvent::Display(v) => self.displayed = Some(v.clone()),
                DeviceEvent::InputRequested { .. } => self.input_pending = true,
                _ => {}
            }
            self.d_events.push(ev);
            return true;
        }
        if let Some(ev) = self.p.poll_event() {
            if self.auto_answer {
                match &ev {
                    Event::NeedUnicastAddress { .. } => {
                        self.p.set_unicast_address(self.now, self.address)
                    }
                    Event::CommitRequired { .. } => self.p.commit_done(self.now),
                    Event::OutputOobRequested { .. } => self.output_pending = true,
                    Event::InputOobDisplay { value, .. } => self.input_value = Some(value.clone()),
                    Event::RecordsReceived {
                        device_certificate,
                        intermediates,
                        ..
                    } => {
                        if let Some(answer) = self.cert_answer.as_mut() {
                            let _ = match answer(device_certificate, intermediates) {
                                Ok(key) => self.p.provide_device_public_key(self.now, key),
                                Err(reason) => self.p.reject_certificate(self.now, reason),
                            };
                        }
                    }
                    _ => {}
                }
            }
            self.p_events.push(ev);
            return true;
        }
        if self.output_pending
            && let Some(v) = self.displayed.take()
        {
            self.output_pending = false;
            if let Err(e) = self.p.provide_output_oob(self.now, v) {
                assert!(self.p.is_finished(), "output OOB value: {e}");
            }
            return true;
        }
        if self.input_pending
            && let Some(v) = self.input_value.take()
        {
            self.input_pending = false;
            if let Err(e) = self.d.provide_input(self.now, v) {
                assert!(self.d.is_finished(), "input OOB value: {e}");
            }
            return true;
        }
        false
    }

    /// Runs until nothing moves.
    pub fn run(&mut self) {
        for _ in 0..1_000 {
            if !self.step() {
                return;
            }
        }
        panic!("the session did not settle");
    }

    /// Runs until the provisioner is in `state` with nothing left to deliver to it.
    pub fn run_until(&mut self, state: &str) {
        for _ in 0..1_000 {
            if self.p.state_name() == state && self.pending_for_provisioner_is_empty() {
                return;
            }
            if !self.step() {
                break;
            }
        }
        assert_eq!(self.p.state_name(), state, "state not reached");
    }

    fn pending_for_provisioner_is_empty(&mut self) -> bool {
        // Deliver the provisioner's own PDUs and the device's events first, but not the
        // device's PDUs: the caller wants to inject instead.
        loop {
            if let Some(pdu) = self.p.poll_transmit() {
                self.p2d.push(pdu.clone());
                self.d.handle_pdu(self.now, &pdu);
                continue;
            }
            if let Some(ev) = self.d.poll_event() {
                match &ev {
                    DeviceEvent::Display(v) => self.displayed = Some(v.clone()),
                    DeviceEvent::InputRequested { .. } => self.input_pending = true,
                    _ => {}
                }
                self.d_events.push(ev);
                continue;
            }
            return true;
        }
    }

    pub fn outcome(&self) -> Option<&meshprov::provisioning::Outcome> {
        self.p_events.iter().find_map(|e| match e {
            Event::Complete(o) => Some(o),
            _ => None,
        })
    }

    pub fn p_failed(&self) -> Option<&meshprov::provisioning::ProvisioningError> {
        self.p_events.iter().find_map(|e| match e {
            Event::Failed(err) => Some(err),
            _ => None,
        })
    }

    pub fn d_failed(&self) -> Option<&meshprov::provisioning::ProvisioningError> {
        self.d_events.iter().find_map(|e| match e {
            DeviceEvent::Failed(err) => Some(err),
            _ => None,
        })
    }
}

pub fn key_pair(seed: u64) -> KeyPair {
    KeyPair::generate(&mut ChaCha20Rng::seed_from_u64(seed))
}

pub fn hex_of(bytes: &[u8]) -> String {
    hex::encode(bytes)
}
