//! The device (provisionee) role, MshPRT v1.1 §5.4.3: used by the simulator and the tests.
//!
//! ```text
//! ExpectInvite ──Records Get / Records List, Record Request / Record Response──▶ ExpectInvite
//! ExpectInvite ──Invite / Capabilities──▶ ExpectStart ──Start──▶ ExpectPublicKey
//!   ──Public Key / (our Public Key)──▶ [ExpectInput ──provide_input / Input Complete──▶]
//!   ExpectConfirmation ──Confirmation / Confirmation──▶ ExpectRandom ──Random / Random──▶
//!   ExpectData ──Data / Complete──▶ Done
//! ```
//!
//! Provisioning records (§5.4.1.11–14, reference §7) are served only before Invite: after it,
//! a Records Get or Record Request is an Unexpected PDU. A device with certificate records
//! advertises Public Key OOB and holds the certificate's private key as its key pair.
//!
//! On bad input the device answers with Provisioning Failed and the code of
//! [`ProvisioningError::failed_code`] (MshPRT v1.1 §5.4.4): Invalid PDU (RFU type), Invalid
//! Format (bad length or value, a Start the device did not advertise, an invalid public key),
//! Unexpected PDU, Confirmation Failed (mismatch or reflection), Decryption Failed, Invalid Data.
//! It then waits for the provisioner to close the link, ignoring further PDUs. On the protocol
//! timeout it fails without sending anything (the bearer closes the link).

use core::fmt;
use std::collections::VecDeque;

use mesh_crypto::ecdh::{KeyPair, PublicKey};
use mesh_crypto::provisioning::{
    Algorithm as CryptoAlgorithm, CONFIRMATION_INPUTS_LEN, Confirmation, ConfirmationContext,
    ProvRandom, SessionKeys, confirmation_inputs,
};
use mesh_crypto::{AuthValue, DevKey, EcdhSecret, NetKey};
use rand_core::CryptoRng;

use crate::time::Instant;
use crate::wire::{
    Capabilities, InputOobAction, ProvisioningPdu, RecordId, Start, StartAuth, StartPublicKey,
    WireError,
};

use super::auth::{self, OobKind, OobValue};
use super::error::ProvisioningError;
use super::records::{self, RecordsFault};
use super::{
    Direction, PROTOCOL_TIMEOUT, ProtocolTimer, TranscriptEntry, parse_pdu, prov_value,
    transcript_entry,
};

/// What the simulated device is (MshPRT v1.1 §5.4.1.2, §5.4.2.4).
#[derive(Clone)]
pub struct DeviceConfig {
    /// The Device UUID (for the bearer's Link Open; carried here for the simulator).
    pub uuid: [u8; 16],
    /// What the device advertises.
    pub capabilities: Capabilities,
    /// The static OOB value, if the device has one (padding: [`auth::static_auth_value`]).
    pub static_oob: Option<Vec<u8>>,
    /// A fixed key pair (an OOB public key, or the sample data); default: fresh from the rng.
    pub key_pair: Option<KeyPair>,
    /// A fixed Output OOB value to "display"; default: random for the action and size.
    pub output_value: Option<OobValue>,
    /// Provisioning records served before Invite (§5.4.1.11): for certificate-based
    /// provisioning 0x0001 the device certificate (DER) and 0x0002.. the intermediates.
    pub records: Vec<(RecordId, Vec<u8>)>,
    /// Tests only: misbehaviour when serving records.
    pub records_fault: Option<RecordsFault>,
}

impl DeviceConfig {
    /// A device with these capabilities and nothing else: no static OOB, a fresh key pair,
    /// a random Output OOB value, no records.
    pub fn new(uuid: [u8; 16], capabilities: Capabilities) -> Self {
        DeviceConfig {
            uuid,
            capabilities,
            static_oob: None,
            key_pair: None,
            output_value: None,
            records: Vec::new(),
            records_fault: None,
        }
    }
}

impl fmt::Debug for DeviceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceConfig")
            .field("capabilities", &self.capabilities)
            .field("static_oob", &self.static_oob.as_ref().map(|v| v.len()))
            .field("key_pair", &self.key_pair)
            .field("output_value", &self.output_value)
            .field(
                "records",
                &self
                    .records
                    .iter()
                    .map(|(id, r)| (id.0, r.len()))
                    .collect::<Vec<_>>(),
            )
            .field("records_fault", &self.records_fault)
            .finish_non_exhaustive()
    }
}

/// What a [`Device`] reports.
#[derive(Debug, Clone)]
pub enum DeviceEvent {
    /// Output OOB: the device blinks, beeps, vibrates or shows this value.
    Display(OobValue),
    /// Input OOB: the installer must enter a value of this action and size
    /// ([`Device::provide_input`]).
    InputRequested {
        /// What the installer does.
        action: InputOobAction,
        /// Digits or characters.
        size: u8,
    },
    /// Provisioning succeeded: the Provisioning Data (§5.4.1.8) and the device key.
    Provisioned {
        /// The device key (§5.4.2.5).
        device_key: DevKey,
        /// The network key.
        net_key: NetKey,
        /// Its index.
        net_key_index: u16,
        /// Flags.
        flags: u8,
        /// IV Index.
        iv_index: u32,
        /// The primary element address.
        address: u16,
    },
    /// Provisioning failed; [`ProvisioningError::failed_code`] is the code sent, if any.
    Failed(ProvisioningError),
}

struct Started {
    invite: u8,
    start: Start,
    alg: CryptoAlgorithm,
}

struct Keyed {
    started: Started,
    ecdh: EcdhSecret,
    inputs: [u8; CONFIRMATION_INPUTS_LEN],
}

struct Confirming {
    keyed: Keyed,
    ctx: ConfirmationContext,
    random: ProvRandom,
    provisioner_confirmation: Confirmation,
}

enum State {
    ExpectInvite,
    ExpectStart {
        invite: u8,
    },
    ExpectPublicKey(Started),
    ExpectInput {
        keyed: Keyed,
        action: InputOobAction,
        size: u8,
    },
    ExpectConfirmation {
        keyed: Keyed,
        auth: AuthValue,
    },
    ExpectRandom(Confirming),
    ExpectData {
        keys: SessionKeys,
    },
    Done,
    Failed(ProvisioningError),
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            State::ExpectInvite => "ExpectInvite",
            State::ExpectStart { .. } => "ExpectStart",
            State::ExpectPublicKey(_) => "ExpectPublicKey",
            State::ExpectInput { .. } => "ExpectInput",
            State::ExpectConfirmation { .. } => "ExpectConfirmation",
            State::ExpectRandom(_) => "ExpectRandom",
            State::ExpectData { .. } => "ExpectData",
            State::Done => "Done",
            State::Failed(_) => "Failed",
        }
    }

    fn expected(&self) -> &'static str {
        match self {
            State::ExpectInvite => "Provisioning Invite (or a records PDU)",
            State::ExpectStart { .. } => "Provisioning Start",
            State::ExpectPublicKey(_) => "Provisioning Public Key",
            State::ExpectInput { .. } => "the installer's input (no PDU)",
            State::ExpectConfirmation { .. } => "Provisioning Confirmation",
            State::ExpectRandom(_) => "Provisioning Random",
            State::ExpectData { .. } => "Provisioning Data",
            State::Done | State::Failed(_) => "nothing (finished)",
        }
    }

    fn algorithm(&self) -> Option<CryptoAlgorithm> {
        match self {
            State::ExpectPublicKey(s) => Some(s.alg),
            State::ExpectInput { keyed, .. } | State::ExpectConfirmation { keyed, .. } => {
                Some(keyed.started.alg)
            }
            State::ExpectRandom(c) => Some(c.keyed.started.alg),
            _ => None,
        }
    }
}

/// A provisioning session, device side (MshPRT v1.1 §5.4.3). Sans-IO like
/// [`super::Provisioner`].
pub struct Device {
    config: DeviceConfig,
    key_pair: KeyPair,
    rng: Box<dyn CryptoRng + Send>,
    fixed_random: Option<ProvRandom>,
    state: State,
    timer: ProtocolTimer,
    transmits: VecDeque<Vec<u8>>,
    events: VecDeque<DeviceEvent>,
    transcript: Vec<TranscriptEntry>,
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Device")
            .field("state", &self.state.name())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Device {
    /// A device waiting for a Provisioning Invite. Its key pair is the configured one or a
    /// fresh one from `rng`.
    pub fn new(config: DeviceConfig, mut rng: Box<dyn CryptoRng + Send>) -> Self {
        let key_pair = match &config.key_pair {
            Some(k) => k.clone(),
            None => KeyPair::generate(&mut *rng),
        };
        Device {
            config,
            key_pair,
            rng,
            fixed_random: None,
            state: State::ExpectInvite,
            timer: ProtocolTimer::new(PROTOCOL_TIMEOUT),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            transcript: Vec::new(),
        }
    }

    /// Uses this Random instead of a fresh one (sample data).
    pub fn with_random(mut self, random: ProvRandom) -> Self {
        self.fixed_random = Some(random);
        self
    }

    /// The device's public key (to give a provisioner out of band).
    pub fn public_key(&self) -> &PublicKey {
        self.key_pair.public_key()
    }

    /// A whole provisioning PDU from the provisioner.
    pub fn handle_pdu(&mut self, now: Instant, pdu: &[u8]) {
        if self.is_finished() {
            return;
        }
        self.transcript
            .push(transcript_entry(now, Direction::Received, pdu));
        let result = parse_pdu(pdu, self.state.algorithm()).and_then(|p| {
            self.timer.arm(now);
            self.on_pdu(now, p)
        });
        if let Err(e) = result {
            self.fail(now, e);
        }
    }

    /// The installer entered `value` on the device (Input OOB): sends Input Complete
    /// (§5.4.1.5). A value that does not fit the action and size is refused.
    pub fn provide_input(
        &mut self,
        now: Instant,
        value: OobValue,
    ) -> Result<(), ProvisioningError> {
        let State::ExpectInput {
            keyed,
            action,
            size,
        } = &self.state
        else {
            return Err(ProvisioningError::WrongState("provide_input"));
        };
        auth::check_value(OobKind::of_input(*action), *size, &value)?;
        let auth = value.auth_value(keyed.started.alg)?;
        let State::ExpectInput { keyed, .. } =
            core::mem::replace(&mut self.state, State::ExpectInvite)
        else {
            // Matched just above.
            return Err(ProvisioningError::WrongState("provide_input"));
        };
        self.send(now, &ProvisioningPdu::InputComplete);
        self.state = State::ExpectConfirmation { keyed, auth };
        Ok(())
    }

    /// The next PDU to send.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<DeviceEvent> {
        self.events.pop_front()
    }

    /// When [`Device::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timer.deadline()
    }

    /// Fails with [`ProvisioningError::Timeout`] if the protocol timer expired; otherwise
    /// does nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        if !self.is_finished() && self.timer.expired(now) {
            self.timer.stop();
            self.events
                .push_back(DeviceEvent::Failed(ProvisioningError::Timeout));
            self.state = State::Failed(ProvisioningError::Timeout);
        }
    }

    /// Whether the session has ended.
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Done | State::Failed(_))
    }

    /// The name of the current state, for debugging and tests.
    pub fn state_name(&self) -> &'static str {
        self.state.name()
    }

    /// The error the session failed with, if it did.
    pub fn error(&self) -> Option<&ProvisioningError> {
        match &self.state {
            State::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// Every PDU sent and received.
    pub fn transcript(&self) -> &[TranscriptEntry] {
        &self.transcript
    }

    fn send(&mut self, now: Instant, pdu: &ProvisioningPdu) {
        let bytes = pdu.to_vec();
        self.transcript
            .push(transcript_entry(now, Direction::Sent, &bytes));
        self.transmits.push_back(bytes);
        self.timer.arm(now);
    }

    /// Sends Provisioning Failed with the error's code and stops (§5.4.4).
    fn fail(&mut self, now: Instant, error: ProvisioningError) {
        self.send(now, &ProvisioningPdu::Failed(error.failed_code()));
        self.timer.stop();
        self.events.push_back(DeviceEvent::Failed(error.clone()));
        self.state = State::Failed(error);
    }

    fn on_pdu(&mut self, now: Instant, pdu: ProvisioningPdu) -> Result<(), ProvisioningError> {
        let state = core::mem::replace(&mut self.state, State::ExpectInvite);
        match (state, pdu) {
            (State::ExpectInvite, ProvisioningPdu::RecordsGet) => {
                self.send(now, &records::serve_list(&self.config.records));
                self.state = State::ExpectInvite;
                Ok(())
            }
            (State::ExpectInvite, ProvisioningPdu::RecordRequest(req)) => {
                let rsp =
                    records::serve_request(&self.config.records, req, self.config.records_fault);
                self.send(now, &rsp);
                self.state = State::ExpectInvite;
                Ok(())
            }
            (State::ExpectInvite, ProvisioningPdu::Invite(i)) => {
                self.send(
                    now,
                    &ProvisioningPdu::Capabilities(self.config.capabilities),
                );
                self.state = State::ExpectStart {
                    invite: i.attention_duration,
                };
                Ok(())
            }
            (State::ExpectStart { invite }, ProvisioningPdu::Start(start)) => {
                start
                    .check_against(&self.config.capabilities)
                    .map_err(ProvisioningError::InvalidParameters)?;
                let alg = CryptoAlgorithm::from_id(start.algorithm.0).ok_or(
                    ProvisioningError::InvalidConfig("unknown algorithm after parsing"),
                )?;
                if let StartAuth::OutputOob { size, .. } | StartAuth::InputOob { size, .. } =
                    start.auth
                {
                    let kind = match start.auth {
                        StartAuth::OutputOob { action, .. } => OobKind::of_output(action),
                        StartAuth::InputOob { action, .. } => OobKind::of_input(action),
                        _ => OobKind::Numeric,
                    };
                    if size > auth::max_size(kind, alg) {
                        return Err(ProvisioningError::InvalidParameters(
                            WireError::Prohibited {
                                what: "Provisioning Start",
                                field: "Authentication Size",
                                value: size.into(),
                                reason: "alphanumeric size exceeds the AuthValue length",
                            },
                        ));
                    }
                }
                self.state = State::ExpectPublicKey(Started { invite, start, alg });
                Ok(())
            }
            (State::ExpectPublicKey(started), ProvisioningPdu::PublicKey(pk)) => {
                let peer = PublicKey::from_bytes(&pk.to_bytes())
                    .map_err(ProvisioningError::InvalidPublicKey)?;
                if peer.as_bytes() == self.key_pair.public_key().as_bytes() {
                    return Err(ProvisioningError::ReflectedPublicKey);
                }
                let ecdh = self
                    .key_pair
                    .ecdh(&peer)
                    .map_err(ProvisioningError::InvalidPublicKey)?;
                let own = *self.key_pair.public_key().as_bytes();
                if started.start.public_key == StartPublicKey::NoOob {
                    let wire_key = crate::wire::PublicKey::from_bytes(&own);
                    self.send(now, &ProvisioningPdu::PublicKey(wire_key));
                }
                let inputs = confirmation_inputs(
                    &[started.invite],
                    &self.config.capabilities.params(),
                    &started.start.params(),
                    peer.as_bytes(),
                    &own,
                );
                let alg = started.alg;
                let start_auth = started.start.auth;
                let keyed = Keyed {
                    started,
                    ecdh,
                    inputs,
                };
                let auth = match start_auth {
                    StartAuth::NoOob => {
                        AuthValue::zeros(alg.value_len()).map_err(ProvisioningError::Crypto)?
                    }
                    StartAuth::StaticOob => {
                        let Some(v) = &self.config.static_oob else {
                            return Err(ProvisioningError::InvalidConfig(
                                "the device advertises static OOB but has no value",
                            ));
                        };
                        auth::static_auth_value(v, alg)?
                    }
                    StartAuth::OutputOob { action, size } => {
                        let kind = OobKind::of_output(action);
                        let value = match &self.config.output_value {
                            Some(v) => v.clone(),
                            None => auth::generate(&mut *self.rng, kind, size),
                        };
                        let auth = value.auth_value(alg)?;
                        self.events.push_back(DeviceEvent::Display(value));
                        auth
                    }
                    StartAuth::InputOob { action, size } => {
                        self.events
                            .push_back(DeviceEvent::InputRequested { action, size });
                        self.state = State::ExpectInput {
                            keyed,
                            action,
                            size,
                        };
                        return Ok(());
                    }
                };
                self.state = State::ExpectConfirmation { keyed, auth };
                Ok(())
            }
            (State::ExpectConfirmation { keyed, auth }, ProvisioningPdu::Confirmation(v)) => {
                let alg = keyed.started.alg;
                let provisioner_confirmation =
                    Confirmation::from_slice(v.as_bytes()).map_err(ProvisioningError::Crypto)?;
                let ctx = ConfirmationContext::new(alg, &keyed.ecdh, &keyed.inputs, auth)
                    .map_err(ProvisioningError::Crypto)?;
                let random = match self.fixed_random.take() {
                    Some(r) if r.as_bytes().len() == alg.value_len() => r,
                    Some(_) => {
                        return Err(ProvisioningError::InvalidConfig(
                            "the fixed random has the wrong length for the algorithm",
                        ));
                    }
                    None => ProvRandom::generate(&mut *self.rng, alg),
                };
                let confirmation = ctx.confirm(&random).map_err(ProvisioningError::Crypto)?;
                if provisioner_confirmation.ct_eq(&confirmation) {
                    return Err(ProvisioningError::ReflectedConfirmation);
                }
                self.send(
                    now,
                    &ProvisioningPdu::Confirmation(prov_value(confirmation.as_bytes())?),
                );
                self.state = State::ExpectRandom(Confirming {
                    keyed,
                    ctx,
                    random,
                    provisioner_confirmation,
                });
                Ok(())
            }
            (State::ExpectRandom(c), ProvisioningPdu::Random(v)) => {
                let provisioner_random =
                    ProvRandom::from_slice(v.as_bytes()).map_err(ProvisioningError::Crypto)?;
                if provisioner_random.ct_eq(&c.random) {
                    return Err(ProvisioningError::ReflectedRandom);
                }
                if !c
                    .ctx
                    .verify(&provisioner_random, &c.provisioner_confirmation)
                {
                    return Err(ProvisioningError::ConfirmationFailed);
                }
                self.send(
                    now,
                    &ProvisioningPdu::Random(prov_value(c.random.as_bytes())?),
                );
                let keys = c
                    .ctx
                    .session_keys(&c.keyed.ecdh, &provisioner_random, &c.random);
                self.state = State::ExpectData { keys };
                Ok(())
            }
            (State::ExpectData { keys }, ProvisioningPdu::Data(d)) => {
                let mut encrypted = [0u8; 33];
                encrypted[..25].copy_from_slice(&d.encrypted_data);
                encrypted[25..].copy_from_slice(&d.mic);
                let plain = keys
                    .decrypt_data(&encrypted)
                    .map_err(|_| ProvisioningError::DecryptionFailed)?;
                let p = plain.expose_secret();
                let mut net_key = [0u8; 16];
                net_key.copy_from_slice(&p[..16]);
                let net_key_index = u16::from_be_bytes([p[16], p[17]]);
                let flags = p[18];
                let iv_index = u32::from_be_bytes([p[19], p[20], p[21], p[22]]);
                let address = u16::from_be_bytes([p[23], p[24]]);
                let last =
                    u32::from(address) + u32::from(self.config.capabilities.num_elements) - 1;
                if address == 0 || last > 0x7FFF {
                    auth::wipe(&mut net_key);
                    return Err(ProvisioningError::InvalidData(
                        "the unicast address range is not valid",
                    ));
                }
                if net_key_index > 0x0FFF {
                    auth::wipe(&mut net_key);
                    return Err(ProvisioningError::InvalidData(
                        "the NetKey Index has more than 12 bits",
                    ));
                }
                self.send(now, &ProvisioningPdu::Complete);
                self.timer.stop();
                self.events.push_back(DeviceEvent::Provisioned {
                    device_key: keys.device_key.clone(),
                    net_key: NetKey::from_bytes(net_key),
                    net_key_index,
                    flags,
                    iv_index,
                    address,
                });
                auth::wipe(&mut net_key);
                self.state = State::Done;
                Ok(())
            }
            (state, pdu) => {
                let expected = state.expected();
                Err(ProvisioningError::UnexpectedPdu {
                    expected,
                    received: pdu.pdu_type(),
                })
            }
        }
    }
}
