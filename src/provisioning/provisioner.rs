//! The provisioner role: one session that provisions one device (MshPRT v1.1 §5.4.3,
//! reference §4.3).
//!
//! ```text
//! [records: start ──Records Get──▶ ExpectRecordsList ──Records List / Record Request──▶
//!   ExpectRecordResponse (one per fragment) ──last fragment──▶ ExpectCertificateDecision
//!   ──provide_device_public_key──▶]
//! start ──Invite──▶ ExpectCapabilities ──Capabilities──▶ ExpectAddress
//!   ──set_unicast_address / Start, Public Key──▶ ExpectPublicKey (skipped with an OOB key)
//!   ──Public Key──▶ [ExpectOutputOob ──provide_output_oob──▶ | ExpectInputComplete ──Input Complete──▶]
//!   ──Confirmation──▶ ExpectConfirmation ──Confirmation──▶ ExpectRandom ──Random──▶
//!   ExpectCommit ──commit_done / Data──▶ ExpectComplete ──Complete──▶ Done
//! ```
//!
//! Rules enforced (reference §4.3, §5): Capabilities are validated by the wire layer and the
//! Start chosen is checked with [`Start::check_against`]; ConfirmationInputs come from the PDUs'
//! parameters; the device's public key is validated (on the curve, not ours, equal to the OOB
//! key when one is configured); a Confirmation or Random equal to ours is refused
//! (CVE-2020-26560); the device's Confirmation is verified in constant time; a Provisioning
//! Failed is accepted in every state — after our Provisioning Data it is
//! [`ProvisioningError::DataRefused`] (the device did not take the data: MshPRT v1.1 §5.4.4),
//! before it [`ProvisioningError::FailedReceived`]; any other PDU that the state does not
//! expect is an [`ProvisioningError::UnexpectedPdu`]. On any error the session ends in the
//! failed state and [`Provisioner::close_reason`] says how to close the link: the provisioner
//! never sends Provisioning Failed (MshPRT v1.1 §5.4.4; see [`super::error`]).
//!
//! Certificate-based provisioning ([`RecordsPolicy::Fetch`], reference §7): the records are
//! fetched after the link opens and before Invite (see [`super::records`]); the caller
//! validates the chain and gives the device certificate's public key, which is then the OOB
//! public key: Start selects Public Key OOB (0x01), the device sends no key, and ECDH uses the
//! certificate's key, so a device without the certificate's private key fails the
//! confirmation. A device that does not offer Public Key OOB is refused
//! ([`ProvisioningError::PublicKeyOobNotOffered`]); a rejected certificate ends the session
//! before Invite, so no Provisioning Data is ever sent to it.
//!
//! The protocol timer (default 60 s) is re-armed by every PDU sent or received; it keeps
//! running while the session waits for the caller (address, OOB value, commit), since the
//! device's own protocol timer runs too.

use core::fmt;
use std::collections::VecDeque;

use mesh_crypto::ecdh::{KeyPair, PublicKey};
use mesh_crypto::provisioning::{
    Algorithm as CryptoAlgorithm, CONFIRMATION_INPUTS_LEN, Confirmation, ConfirmationContext,
    ProvRandom, SessionKeys, confirmation_inputs,
};
use mesh_crypto::{AuthValue, EcdhSecret, ProvisioningDataPlain};
use rand_core::CryptoRng;

use crate::time::Instant;
use crate::wire::{
    Algorithms, Capabilities, Data, InputOobAction, InputOobActions, Invite, OobType,
    OutputOobAction, OutputOobActions, ProvisioningPdu, PublicKeyType, Start, StartAuth,
    StartPublicKey,
};

use super::auth::{self, OobKind, OobValue};
use super::error::{CloseReason, ProvisioningError};
use super::keylog;
use super::records::{self, Fetcher, MAX_FRAGMENT_SIZE, RecordsPolicy, Step};
use super::{
    AlgorithmPolicy, AuthPolicy, Direction, Event, Outcome, ProtocolTimer, ProvisionerConfig,
    ProvisioningParams, TranscriptEntry, parse_pdu, prov_value, transcript_entry, wire_algorithm,
};

/// What Capabilities and the configuration settled: the Start and the algorithm.
struct Negotiated {
    caps: Capabilities,
    start: Start,
    alg: CryptoAlgorithm,
}

/// After the address is known and our public key is sent.
struct Keying {
    neg: Negotiated,
    address: u16,
    key_pair: KeyPair,
}

/// After the device's public key: the shared secret and ConfirmationInputs.
struct Keyed {
    keying: Keying,
    device_key: PublicKey,
    ecdh: EcdhSecret,
    inputs: [u8; CONFIRMATION_INPUTS_LEN],
}

/// After our Confirmation is sent.
struct Confirming {
    keyed: Keyed,
    ctx: ConfirmationContext,
    random: ProvRandom,
    confirmation: Confirmation,
}

/// After the device's Random verified.
struct Finishing {
    keyed: Keyed,
    keys: SessionKeys,
}

/// One state per expected input (rustls style).
enum State {
    /// Before [`Provisioner::start`].
    Idle,
    /// Records Get sent; waiting for Provisioning Records List (§5.4.1.14).
    ExpectRecordsList,
    /// Record Request sent; waiting for its Provisioning Record Response (§5.4.1.12).
    ExpectRecordResponse(Fetcher),
    /// Records delivered; waiting for [`Provisioner::provide_device_public_key`] or
    /// [`Provisioner::reject_certificate`].
    ExpectCertificateDecision,
    /// Invite sent; waiting for Provisioning Capabilities (§5.4.1.2).
    ExpectCapabilities,
    /// Waiting for the caller's [`Provisioner::set_unicast_address`].
    ExpectAddress(Negotiated),
    /// Start and our Public Key sent; waiting for the device's Public Key (§5.4.1.4).
    ExpectPublicKey(Keying),
    /// Waiting for the caller's [`Provisioner::provide_output_oob`].
    ExpectOutputOob {
        keyed: Keyed,
        action: OutputOobAction,
        size: u8,
    },
    /// Input OOB value shown; waiting for Provisioning Input Complete (§5.4.1.5).
    ExpectInputComplete { keyed: Keyed, auth: AuthValue },
    /// Our Confirmation sent; waiting for the device's (§5.4.1.6).
    ExpectConfirmation(Confirming),
    /// Our Random sent; waiting for the device's (§5.4.1.7).
    ExpectRandom {
        confirming: Confirming,
        device_confirmation: Confirmation,
    },
    /// Waiting for the caller's [`Provisioner::commit_done`].
    ExpectCommit(Finishing),
    /// Provisioning Data sent; waiting for Provisioning Complete (§5.4.1.9).
    ExpectComplete(Finishing),
    /// Finished successfully.
    Done,
    /// Finished with an error.
    Failed(ProvisioningError),
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            State::Idle => "Idle",
            State::ExpectRecordsList => "ExpectRecordsList",
            State::ExpectRecordResponse(_) => "ExpectRecordResponse",
            State::ExpectCertificateDecision => "ExpectCertificateDecision",
            State::ExpectCapabilities => "ExpectCapabilities",
            State::ExpectAddress(_) => "ExpectAddress",
            State::ExpectPublicKey(_) => "ExpectPublicKey",
            State::ExpectOutputOob { .. } => "ExpectOutputOob",
            State::ExpectInputComplete { .. } => "ExpectInputComplete",
            State::ExpectConfirmation(_) => "ExpectConfirmation",
            State::ExpectRandom { .. } => "ExpectRandom",
            State::ExpectCommit(_) => "ExpectCommit",
            State::ExpectComplete(_) => "ExpectComplete",
            State::Done => "Done",
            State::Failed(_) => "Failed",
        }
    }

    /// What this state waits for, in words (for [`ProvisioningError::UnexpectedPdu`]).
    fn expected(&self) -> &'static str {
        match self {
            State::Idle => "start()",
            State::ExpectRecordsList => "Provisioning Records List",
            State::ExpectRecordResponse(_) => "Provisioning Record Response",
            State::ExpectCertificateDecision => "the verdict on the certificate (no PDU)",
            State::ExpectCapabilities => "Provisioning Capabilities",
            State::ExpectAddress(_) => "the unicast address (no PDU)",
            State::ExpectPublicKey(_) => "Provisioning Public Key",
            State::ExpectOutputOob { .. } => "the output OOB value (no PDU)",
            State::ExpectInputComplete { .. } => "Provisioning Input Complete",
            State::ExpectConfirmation(_) => "Provisioning Confirmation",
            State::ExpectRandom { .. } => "Provisioning Random",
            State::ExpectCommit(_) => "the commit of the device key (no PDU)",
            State::ExpectComplete(_) => "Provisioning Complete",
            State::Done | State::Failed(_) => "nothing (finished)",
        }
    }
}

/// A provisioning session, provisioner side (MshPRT v1.1 §5.4.3). Sans-IO: see the module
/// documentation of [`crate::provisioning`].
pub struct Provisioner {
    config: ProvisionerConfig,
    params: ProvisioningParams,
    rng: Box<dyn CryptoRng + Send>,
    fixed_key_pair: Option<KeyPair>,
    fixed_random: Option<ProvRandom>,
    invite: Invite,
    /// The device certificate's public key, once the caller gave it.
    certificate_key: Option<[u8; 64]>,
    state: State,
    timer: ProtocolTimer,
    transmits: VecDeque<Vec<u8>>,
    events: VecDeque<Event>,
    transcript: Vec<TranscriptEntry>,
    /// Our public key `X ‖ Y` once chosen: the session's name in the key log.
    key_log_session: Option<[u8; 64]>,
}

impl fmt::Debug for Provisioner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Provisioner")
            .field("state", &self.state.name())
            .field("config", &self.config)
            .field("net_key_index", &self.params.net_key_index)
            .field("deadline", &self.timer.deadline())
            .field("pending_transmits", &self.transmits.len())
            .field("pending_events", &self.events.len())
            .finish_non_exhaustive()
    }
}

impl Provisioner {
    /// A session that will provision one device into the network of `params`, drawing its
    /// ephemeral key pair and random from `rng` (§5.4.2.3: a fresh key pair per session).
    pub fn new(
        config: ProvisionerConfig,
        params: ProvisioningParams,
        rng: Box<dyn CryptoRng + Send>,
    ) -> Self {
        let timer = ProtocolTimer::new(config.protocol_timeout);
        let invite = Invite {
            attention_duration: config.attention_duration,
        };
        Provisioner {
            config,
            params,
            rng,
            fixed_key_pair: None,
            fixed_random: None,
            invite,
            certificate_key: None,
            state: State::Idle,
            timer,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            transcript: Vec::new(),
            key_log_session: None,
        }
    }

    /// Uses this key pair instead of a fresh one: for the specification's sample data and for
    /// replaying a recorded session only.
    pub fn with_key_pair(mut self, key_pair: KeyPair) -> Self {
        self.fixed_key_pair = Some(key_pair);
        self
    }

    /// Uses this Random instead of a fresh one (samples and replay only). Its length must fit
    /// the algorithm negotiated, or the session fails with
    /// [`ProvisioningError::InvalidConfig`].
    pub fn with_random(mut self, random: ProvRandom) -> Self {
        self.fixed_random = Some(random);
        self
    }

    /// Starts the session: sends Provisioning Invite (§5.4.1.1), or with
    /// [`RecordsPolicy::Fetch`] Provisioning Records Get (§5.4.1.13) first. A fragment size
    /// outside 1..=[`MAX_FRAGMENT_SIZE`] fails the session
    /// ([`ProvisioningError::InvalidConfig`]). Does nothing after the first call.
    pub fn start(&mut self, now: Instant) {
        if !matches!(self.state, State::Idle) {
            return;
        }
        match self.config.records {
            RecordsPolicy::None => self.send_invite(now),
            RecordsPolicy::Fetch { fragment_size } => {
                if fragment_size == 0 || fragment_size > MAX_FRAGMENT_SIZE {
                    return self.fail(ProvisioningError::InvalidConfig(
                        "the record fragment size must be 1..=1024",
                    ));
                }
                self.send(now, &ProvisioningPdu::RecordsGet);
                self.state = State::ExpectRecordsList;
            }
        }
    }

    fn send_invite(&mut self, now: Instant) {
        self.send(now, &ProvisioningPdu::Invite(self.invite));
        self.state = State::ExpectCapabilities;
    }

    /// The caller's answer to [`Event::RecordsReceived`] when the chain is valid: the device
    /// certificate's public key (`X ‖ Y`). It becomes the device's OOB public key (Start Public
    /// Key = 0x01, ECDH with it) and the session goes on with Invite.
    ///
    /// A call in another state is [`ProvisioningError::WrongState`] and changes nothing. A key
    /// that is not a valid P-256 point ([`ProvisioningError::InvalidPublicKey`]) or that
    /// differs from a configured [`ProvisionerConfig::oob_public_key`]
    /// ([`ProvisioningError::OobPublicKeyMismatch`]) fails the session, and is returned too.
    pub fn provide_device_public_key(
        &mut self,
        now: Instant,
        key: [u8; 64],
    ) -> Result<(), ProvisioningError> {
        if !matches!(self.state, State::ExpectCertificateDecision) {
            return Err(ProvisioningError::WrongState("provide_device_public_key"));
        }
        let checked = PublicKey::from_bytes(&key)
            .map_err(ProvisioningError::InvalidPublicKey)
            .and_then(|_| match &self.config.oob_public_key {
                Some(oob) if *oob != key => Err(ProvisioningError::OobPublicKeyMismatch),
                _ => Ok(()),
            });
        if let Err(e) = checked {
            self.fail(e.clone());
            return Err(e);
        }
        self.certificate_key = Some(key);
        self.send_invite(now);
        Ok(())
    }

    /// The caller's answer to [`Event::RecordsReceived`] when the chain is not acceptable: the
    /// session fails with [`ProvisioningError::CertificateRejected`] (close the link with
    /// reason Fail); no Invite and no Provisioning Data are sent. A call in another state is
    /// [`ProvisioningError::WrongState`] and changes nothing.
    pub fn reject_certificate(
        &mut self,
        _now: Instant,
        reason: impl Into<String>,
    ) -> Result<(), ProvisioningError> {
        if !matches!(self.state, State::ExpectCertificateDecision) {
            return Err(ProvisioningError::WrongState("reject_certificate"));
        }
        self.fail(ProvisioningError::CertificateRejected(reason.into()));
        Ok(())
    }

    /// A whole provisioning PDU from the device (type octet included).
    pub fn handle_pdu(&mut self, now: Instant, pdu: &[u8]) {
        if self.is_finished() || matches!(self.state, State::Idle) {
            return;
        }
        self.transcript
            .push(transcript_entry(now, Direction::Received, pdu));
        if matches!(self.state, State::ExpectRecordResponse(_))
            && let Some(e) = records::fragment_out_of_bounds(pdu)
        {
            return self.fail(e);
        }
        let parsed = match parse_pdu(pdu, self.algorithm()) {
            Ok(p) => p,
            Err(e) => return self.fail(e),
        };
        if let ProvisioningPdu::Failed(code) = parsed {
            // In answer to our Provisioning Data the device refused it (§5.4.4): it holds no
            // key, which the caller must know to void its write-ahead commit.
            return self.fail(match self.state {
                State::ExpectComplete(_) => ProvisioningError::DataRefused(code),
                _ => ProvisioningError::FailedReceived(code),
            });
        }
        self.timer.arm(now);
        if let Err(e) = self.on_pdu(now, parsed) {
            self.fail(e);
        }
    }

    /// The caller's answer to [`Event::NeedUnicastAddress`]: the primary element address of a
    /// free range of the device's elements. Sends Provisioning Start and our Public Key
    /// (§5.4.1.3, §5.4.1.4). An invalid range fails the session
    /// ([`ProvisioningError::InvalidAddress`]); a call in another state is ignored.
    pub fn set_unicast_address(&mut self, now: Instant, address: u16) {
        if !matches!(self.state, State::ExpectAddress(_)) {
            return;
        }
        let State::ExpectAddress(neg) = core::mem::replace(&mut self.state, State::Idle) else {
            return; // Checked just above.
        };
        let elements = neg.caps.num_elements;
        let last = u32::from(address) + u32::from(elements) - 1;
        if address == 0 || last > 0x7FFF {
            return self.fail(ProvisioningError::InvalidAddress { address, elements });
        }
        if let Err(e) = self.send_start(now, neg, address) {
            self.fail(e);
        }
    }

    /// The caller's answer to [`Event::OutputOobRequested`]: what the device showed; sends our
    /// Confirmation (§5.4.1.6). A value that does not fit the action and size is refused with
    /// [`ProvisioningError::InvalidOobValue`] and the session keeps waiting; a call in another
    /// state is [`ProvisioningError::WrongState`]. `Ok` means the value was accepted (a later
    /// failure of the session is reported as [`Event::Failed`]).
    pub fn provide_output_oob(
        &mut self,
        now: Instant,
        value: OobValue,
    ) -> Result<(), ProvisioningError> {
        let State::ExpectOutputOob {
            keyed,
            action,
            size,
        } = &self.state
        else {
            return Err(ProvisioningError::WrongState("provide_output_oob"));
        };
        auth::check_value(OobKind::of_output(*action), *size, &value)?;
        let auth = value.auth_value(keyed.keying.neg.alg)?;
        let State::ExpectOutputOob { keyed, .. } = core::mem::replace(&mut self.state, State::Idle)
        else {
            // Matched just above.
            return Err(ProvisioningError::WrongState("provide_output_oob"));
        };
        if let Err(e) = self.send_confirmation(now, keyed, auth) {
            self.fail(e);
        }
        Ok(())
    }

    /// The caller's answer to [`Event::CommitRequired`]: the device key and address are
    /// stored. Sends the Provisioning Data (§5.4.1.8). Ignored in other states.
    pub fn commit_done(&mut self, now: Instant) {
        if !matches!(self.state, State::ExpectCommit(_)) {
            return;
        }
        let State::ExpectCommit(fin) = core::mem::replace(&mut self.state, State::Idle) else {
            return; // Checked just above.
        };
        if let Err(e) = self.send_data(now, &fin) {
            return self.fail(e);
        }
        self.state = State::ExpectComplete(fin);
    }

    /// The bearer lost or closed the link: the session fails with
    /// [`ProvisioningError::LinkClosed`] unless it is already finished.
    pub fn handle_link_closed(&mut self, _now: Instant) {
        if !self.is_finished() && !matches!(self.state, State::Idle) {
            self.fail(ProvisioningError::LinkClosed);
        }
    }

    /// Time passed: fails the session with [`ProvisioningError::Timeout`] if the protocol
    /// timer expired; otherwise (a spurious wake-up) does nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        if !self.is_finished() && self.timer.expired(now) {
            self.fail(ProvisioningError::Timeout);
        }
    }

    /// The next provisioning PDU to send, type octet included.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmits.pop_front()
    }

    /// The next event for the caller.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Provisioner::handle_timeout`] must be called next, if a timer runs.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timer.deadline()
    }

    /// Once finished, the PB-ADV Link Close reason (reference §2): Success after Provisioning
    /// Complete, Timeout after the protocol timeout, Fail otherwise. `None` while running.
    pub fn close_reason(&self) -> Option<CloseReason> {
        match &self.state {
            State::Done => Some(CloseReason::SUCCESS),
            State::Failed(e) => Some(e.close_reason()),
            _ => None,
        }
    }

    /// Every PDU sent and received so far.
    pub fn transcript(&self) -> &[TranscriptEntry] {
        &self.transcript
    }

    /// Whether the session has ended (successfully or not).
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Done | State::Failed(_))
    }

    /// The name of the current state (`"ExpectCapabilities"`, ...), for debugging and tests.
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

    // ----- internals -----

    fn algorithm(&self) -> Option<CryptoAlgorithm> {
        match &self.state {
            State::ExpectAddress(n) => Some(n.alg),
            State::ExpectPublicKey(k) => Some(k.neg.alg),
            State::ExpectOutputOob { keyed, .. } | State::ExpectInputComplete { keyed, .. } => {
                Some(keyed.keying.neg.alg)
            }
            State::ExpectConfirmation(c) | State::ExpectRandom { confirming: c, .. } => {
                Some(c.keyed.keying.neg.alg)
            }
            State::ExpectCommit(f) | State::ExpectComplete(f) => Some(f.keyed.keying.neg.alg),
            State::Idle
            | State::ExpectRecordsList
            | State::ExpectRecordResponse(_)
            | State::ExpectCertificateDecision
            | State::ExpectCapabilities
            | State::Done
            | State::Failed(_) => None,
        }
    }

    /// The device's public key known out of band: the certificate's, else the configured one.
    fn oob_public_key(&self) -> Option<&[u8; 64]> {
        self.certificate_key
            .as_ref()
            .or(self.config.oob_public_key.as_ref())
    }

    /// Hands one secret to the configured key log ([`ProvisionerConfig::key_log`]), if any.
    fn log_secret(&self, label: &str, secret: &[u8]) {
        if let (Some(log), Some(session)) = (&self.config.key_log, &self.key_log_session)
            && log.will_log(label)
        {
            log.log(label, session, secret);
        }
    }

    fn send(&mut self, now: Instant, pdu: &ProvisioningPdu) {
        let bytes = pdu.to_vec();
        self.transcript
            .push(transcript_entry(now, Direction::Sent, &bytes));
        self.transmits.push_back(bytes);
        self.timer.arm(now);
    }

    fn fail(&mut self, error: ProvisioningError) {
        self.timer.stop();
        self.events.push_back(Event::Failed(error.clone()));
        self.state = State::Failed(error);
    }

    fn on_pdu(&mut self, now: Instant, pdu: ProvisioningPdu) -> Result<(), ProvisioningError> {
        let state = core::mem::replace(&mut self.state, State::Idle);
        match (state, pdu) {
            (State::ExpectRecordsList, ProvisioningPdu::RecordsList(list)) => {
                let RecordsPolicy::Fetch { fragment_size } = self.config.records else {
                    return Err(ProvisioningError::InvalidConfig(
                        "records fetched without a records policy",
                    ));
                };
                let (fetcher, req) = Fetcher::start(list, fragment_size)?;
                self.send(now, &ProvisioningPdu::RecordRequest(req));
                self.state = State::ExpectRecordResponse(fetcher);
                Ok(())
            }
            (State::ExpectRecordResponse(mut fetcher), ProvisioningPdu::RecordResponse(rsp)) => {
                match fetcher.on_response(rsp)? {
                    Step::Request(req) => {
                        self.send(now, &ProvisioningPdu::RecordRequest(req));
                        self.state = State::ExpectRecordResponse(fetcher);
                    }
                    Step::Done(received) => {
                        self.events.push_back(Event::RecordsReceived {
                            device_certificate: received.device_certificate,
                            intermediates: received.intermediates,
                            list: received.list,
                        });
                        self.state = State::ExpectCertificateDecision;
                    }
                }
                Ok(())
            }
            (State::ExpectCapabilities, ProvisioningPdu::Capabilities(caps)) => {
                let neg = negotiate(&self.config, self.certificate_key.as_ref(), caps)?;
                self.events.push_back(Event::CapabilitiesReceived(caps));
                self.events.push_back(Event::NeedUnicastAddress {
                    elements: caps.num_elements,
                });
                self.state = State::ExpectAddress(neg);
                Ok(())
            }
            (State::ExpectPublicKey(keying), ProvisioningPdu::PublicKey(pk)) => {
                let device_key = PublicKey::from_bytes(&pk.to_bytes())
                    .map_err(ProvisioningError::InvalidPublicKey)?;
                if let Some(oob) = self.oob_public_key()
                    && oob != device_key.as_bytes()
                {
                    return Err(ProvisioningError::OobPublicKeyMismatch);
                }
                self.keys_known(now, keying, device_key)
            }
            (State::ExpectInputComplete { keyed, auth }, ProvisioningPdu::InputComplete) => {
                self.send_confirmation(now, keyed, auth)
            }
            (State::ExpectConfirmation(confirming), ProvisioningPdu::Confirmation(v)) => {
                let device_confirmation =
                    Confirmation::from_slice(v.as_bytes()).map_err(ProvisioningError::Crypto)?;
                if device_confirmation.ct_eq(&confirming.confirmation) {
                    return Err(ProvisioningError::ReflectedConfirmation);
                }
                let random = prov_value(confirming.random.as_bytes())?;
                self.send(now, &ProvisioningPdu::Random(random));
                self.state = State::ExpectRandom {
                    confirming,
                    device_confirmation,
                };
                Ok(())
            }
            (
                State::ExpectRandom {
                    confirming,
                    device_confirmation,
                },
                ProvisioningPdu::Random(v),
            ) => {
                let device_random =
                    ProvRandom::from_slice(v.as_bytes()).map_err(ProvisioningError::Crypto)?;
                if device_random.ct_eq(&confirming.random) {
                    return Err(ProvisioningError::ReflectedRandom);
                }
                if !confirming.ctx.verify(&device_random, &device_confirmation) {
                    return Err(ProvisioningError::ConfirmationFailed);
                }
                let Confirming {
                    keyed, ctx, random, ..
                } = confirming;
                let keys = ctx.session_keys(&keyed.ecdh, &random, &device_random);
                self.log_secret(keylog::DEVICE_RANDOM, device_random.as_bytes());
                self.log_secret(keylog::SESSION_KEY, keys.session_key.expose_secret());
                self.log_secret(keylog::SESSION_NONCE, &keys.session_nonce);
                self.log_secret(keylog::DEVICE_KEY, keys.device_key.expose_secret());
                self.events.push_back(Event::CommitRequired {
                    address: keyed.keying.address,
                    elements: keyed.keying.neg.caps.num_elements,
                    device_key: keys.device_key.clone(),
                });
                self.state = State::ExpectCommit(Finishing { keyed, keys });
                Ok(())
            }
            (State::ExpectComplete(fin), ProvisioningPdu::Complete) => {
                let Finishing { keyed, keys } = fin;
                let neg = &keyed.keying.neg;
                let outcome = Outcome {
                    address: keyed.keying.address,
                    elements: neg.caps.num_elements,
                    algorithm: neg.alg,
                    auth: neg.start.auth,
                    public_key_oob: neg.start.public_key == StartPublicKey::Oob,
                    device_key: keys.device_key.clone(),
                    device_public_key: keyed.device_key,
                    capabilities: neg.caps,
                };
                self.timer.stop();
                self.state = State::Done;
                self.events.push_back(Event::Complete(outcome));
                Ok(())
            }
            (state, pdu) => Err(ProvisioningError::UnexpectedPdu {
                expected: state.expected(),
                received: pdu.pdu_type(),
            }),
        }
    }

    fn send_start(
        &mut self,
        now: Instant,
        neg: Negotiated,
        address: u16,
    ) -> Result<(), ProvisioningError> {
        let key_pair = match self.fixed_key_pair.take() {
            Some(k) => k,
            None => KeyPair::generate(&mut *self.rng),
        };
        if self.config.key_log.is_some() {
            self.key_log_session = Some(*key_pair.public_key().as_bytes());
            let mut private = key_pair.expose_private_bytes();
            self.log_secret(keylog::PROVISIONER_PRIVATE_KEY, &private);
            auth::wipe(&mut private);
        }
        self.send(now, &ProvisioningPdu::Start(neg.start));
        let ours = crate::wire::PublicKey::from_bytes(key_pair.public_key().as_bytes());
        self.send(now, &ProvisioningPdu::PublicKey(ours));
        let keying = Keying {
            neg,
            address,
            key_pair,
        };
        if keying.neg.start.public_key == StartPublicKey::Oob {
            let Some(oob) = self.oob_public_key().copied() else {
                // negotiate() selects an OOB public key only when one is configured.
                return Err(ProvisioningError::InvalidConfig(
                    "OOB public key selected without one configured",
                ));
            };
            let device_key = PublicKey::from_bytes(&oob).map_err(|_| {
                ProvisioningError::InvalidConfig("the configured OOB public key is not valid")
            })?;
            self.keys_known(now, keying, device_key)
        } else {
            self.state = State::ExpectPublicKey(keying);
            Ok(())
        }
    }

    /// Both public keys known: ECDH, ConfirmationInputs, then the authentication step.
    fn keys_known(
        &mut self,
        now: Instant,
        keying: Keying,
        device_key: PublicKey,
    ) -> Result<(), ProvisioningError> {
        if device_key.as_bytes() == keying.key_pair.public_key().as_bytes() {
            return Err(ProvisioningError::ReflectedPublicKey);
        }
        let ecdh = keying
            .key_pair
            .ecdh(&device_key)
            .map_err(ProvisioningError::InvalidPublicKey)?;
        self.log_secret(keylog::ECDH_SECRET, ecdh.expose_secret());
        let inputs = confirmation_inputs(
            &[self.invite.attention_duration],
            &keying.neg.caps.params(),
            &keying.neg.start.params(),
            keying.key_pair.public_key().as_bytes(),
            device_key.as_bytes(),
        );
        let alg = keying.neg.alg;
        let start_auth = keying.neg.start.auth;
        let keyed = Keyed {
            keying,
            device_key,
            ecdh,
            inputs,
        };
        match start_auth {
            StartAuth::NoOob => {
                let auth = AuthValue::zeros(alg.value_len()).map_err(ProvisioningError::Crypto)?;
                self.send_confirmation(now, keyed, auth)
            }
            StartAuth::StaticOob => {
                let value = match &self.config.auth {
                    AuthPolicy::Static(v)
                    | AuthPolicy::Auto {
                        static_oob: Some(v),
                    } => v,
                    _ => {
                        return Err(ProvisioningError::InvalidConfig(
                            "static OOB selected without a static value",
                        ));
                    }
                };
                let auth = auth::static_auth_value(value, alg)?;
                self.send_confirmation(now, keyed, auth)
            }
            StartAuth::OutputOob { action, size } => {
                self.events
                    .push_back(Event::OutputOobRequested { action, size });
                self.state = State::ExpectOutputOob {
                    keyed,
                    action,
                    size,
                };
                Ok(())
            }
            StartAuth::InputOob { action, size } => {
                let value = auth::generate(&mut *self.rng, OobKind::of_input(action), size);
                let auth = value.auth_value(alg)?;
                self.events
                    .push_back(Event::InputOobDisplay { action, value });
                self.state = State::ExpectInputComplete { keyed, auth };
                Ok(())
            }
        }
    }

    fn send_confirmation(
        &mut self,
        now: Instant,
        keyed: Keyed,
        auth: AuthValue,
    ) -> Result<(), ProvisioningError> {
        let alg = keyed.keying.neg.alg;
        self.log_secret(keylog::AUTH_VALUE, auth.expose_secret());
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
        self.log_secret(keylog::PROVISIONER_RANDOM, random.as_bytes());
        let confirmation = ctx.confirm(&random).map_err(ProvisioningError::Crypto)?;
        self.send(
            now,
            &ProvisioningPdu::Confirmation(prov_value(confirmation.as_bytes())?),
        );
        self.state = State::ExpectConfirmation(Confirming {
            keyed,
            ctx,
            random,
            confirmation,
        });
        Ok(())
    }

    fn send_data(&mut self, now: Instant, fin: &Finishing) -> Result<(), ProvisioningError> {
        let mut plain = [0u8; 25];
        plain[..16].copy_from_slice(self.params.net_key.expose_secret());
        plain[16..18].copy_from_slice(&self.params.net_key_index.to_be_bytes());
        plain[18] = self.params.flags;
        plain[19..23].copy_from_slice(&self.params.iv_index.to_be_bytes());
        plain[23..25].copy_from_slice(&fin.keyed.keying.address.to_be_bytes());
        let data = ProvisioningDataPlain::from_bytes(plain);
        auth::wipe(&mut plain);
        let encrypted = fin
            .keys
            .encrypt_data(&data)
            .map_err(ProvisioningError::Crypto)?;
        let mut pdu = Data {
            encrypted_data: [0; 25],
            mic: [0; 8],
        };
        pdu.encrypted_data.copy_from_slice(&encrypted[..25]);
        pdu.mic.copy_from_slice(&encrypted[25..]);
        self.send(now, &ProvisioningPdu::Data(pdu));
        Ok(())
    }
}

/// Chooses the algorithm and the Start from the configuration and the device's Capabilities
/// (§5.4.1.3), then checks the Start against them. With a certificate's key, the device must
/// offer Public Key OOB, and No OOB authentication is acceptable without
/// [`ProvisionerConfig::allow_no_oob`] (the certificate authenticates the device; a device
/// that asks for OOB authentication only still gets an OOB method).
fn negotiate(
    config: &ProvisionerConfig,
    certificate_key: Option<&[u8; 64]>,
    caps: Capabilities,
) -> Result<Negotiated, ProvisioningError> {
    let offers_oob_key = caps.public_key_type.contains(PublicKeyType::OOB_AVAILABLE);
    if certificate_key.is_some() && !offers_oob_key {
        return Err(ProvisioningError::PublicKeyOobNotOffered);
    }
    let cmac = caps.algorithms.contains(Algorithms::CMAC_AES128);
    let hmac = caps.algorithms.contains(Algorithms::HMAC_SHA256);
    let alg = match config.algorithm {
        AlgorithmPolicy::Auto if hmac => CryptoAlgorithm::HmacSha256,
        AlgorithmPolicy::Auto | AlgorithmPolicy::Cmac if cmac => CryptoAlgorithm::CmacAes128,
        AlgorithmPolicy::Hmac if hmac => CryptoAlgorithm::HmacSha256,
        _ => {
            return Err(ProvisioningError::NoAcceptableAlgorithm {
                offered: caps.algorithms,
            });
        }
    };
    let public_key =
        if (certificate_key.is_some() || config.oob_public_key.is_some()) && offers_oob_key {
            StartPublicKey::Oob
        } else {
            StartPublicKey::NoOob
        };
    let offers_static = caps.oob_type.contains(OobType::STATIC_OOB_AVAILABLE);
    let output = best_output(&caps, alg);
    let input = best_input(&caps, alg);
    let no_oob = || {
        if caps.oob_type.contains(OobType::ONLY_OOB_AUTHENTICATED) {
            Err(ProvisioningError::NoAcceptableAuthMethod(
                "the device accepts only OOB-authenticated provisioning",
            ))
        } else if !config.allow_no_oob && certificate_key.is_none() {
            // With a verified certificate's key the device is authenticated by its key: only
            // the holder of the certificate's private key can compute the Confirmation.
            Err(ProvisioningError::NoOobNotAllowed)
        } else {
            Ok(StartAuth::NoOob)
        }
    };
    let auth = match &config.auth {
        AuthPolicy::NoOob => no_oob()?,
        AuthPolicy::Static(_) if offers_static => StartAuth::StaticOob,
        AuthPolicy::Static(_) => {
            return Err(ProvisioningError::NoAcceptableAuthMethod(
                "the device offers no static OOB",
            ));
        }
        AuthPolicy::Output => output.ok_or(ProvisioningError::NoAcceptableAuthMethod(
            "the device offers no output OOB",
        ))?,
        AuthPolicy::Input => input.ok_or(ProvisioningError::NoAcceptableAuthMethod(
            "the device offers no input OOB",
        ))?,
        AuthPolicy::Auto { static_oob } => {
            if static_oob.is_some() && offers_static {
                StartAuth::StaticOob
            } else if let Some(o) = output {
                o
            } else if let Some(i) = input {
                i
            } else if offers_static {
                return Err(ProvisioningError::NoAcceptableAuthMethod(
                    "the device needs its static OOB value, and none is configured",
                ));
            } else {
                no_oob()?
            }
        }
    };
    let start = Start {
        algorithm: wire_algorithm(alg),
        public_key,
        auth,
    };
    start.check_against(&caps).map_err(|_| {
        ProvisioningError::InvalidConfig("the selected Start is not supported by the device")
    })?;
    Ok(Negotiated { caps, start, alg })
}

/// The preferred Output OOB action and size: Numeric, Alphanumeric, Blink, Beep, Vibrate.
fn best_output(caps: &Capabilities, alg: CryptoAlgorithm) -> Option<StartAuth> {
    if caps.output_oob_size == 0 {
        return None;
    }
    [
        (
            OutputOobAction::OUTPUT_NUMERIC,
            OutputOobActions::OUTPUT_NUMERIC,
        ),
        (
            OutputOobAction::OUTPUT_ALPHANUMERIC,
            OutputOobActions::OUTPUT_ALPHANUMERIC,
        ),
        (OutputOobAction::BLINK, OutputOobActions::BLINK),
        (OutputOobAction::BEEP, OutputOobActions::BEEP),
        (OutputOobAction::VIBRATE, OutputOobActions::VIBRATE),
    ]
    .into_iter()
    .find(|(_, bit)| caps.output_oob_action.contains(*bit))
    .map(|(action, _)| StartAuth::OutputOob {
        action,
        size: caps
            .output_oob_size
            .min(auth::max_size(OobKind::of_output(action), alg)),
    })
}

/// The preferred Input OOB action and size: Numeric, Alphanumeric, Push, Twist.
fn best_input(caps: &Capabilities, alg: CryptoAlgorithm) -> Option<StartAuth> {
    if caps.input_oob_size == 0 {
        return None;
    }
    [
        (
            InputOobAction::INPUT_NUMERIC,
            InputOobActions::INPUT_NUMERIC,
        ),
        (
            InputOobAction::INPUT_ALPHANUMERIC,
            InputOobActions::INPUT_ALPHANUMERIC,
        ),
        (InputOobAction::PUSH, InputOobActions::PUSH),
        (InputOobAction::TWIST, InputOobActions::TWIST),
    ]
    .into_iter()
    .find(|(_, bit)| caps.input_oob_action.contains(*bit))
    .map(|(action, _)| StartAuth::InputOob {
        action,
        size: caps
            .input_oob_size
            .min(auth::max_size(OobKind::of_input(action), alg)),
    })
}
