//! PB-GATT, MshPRT v1.1 §5.2.2: provisioning PDUs carried in Proxy PDUs (§6.3.1) over the
//! Mesh Provisioning service (0x1827), sans-IO.
//!
//! [`ProxySar`] is the Proxy protocol segmentation and reassembly (§6.3.1) for one GATT
//! connection, usable on both the provisioning and the proxy service: messages longer than one
//! write (ATT_MTU − 3 − 1 octets of data) are split into first / continuation / last segments,
//! and a reassembly that does not complete within 20 s (§6.6) means the connection must be
//! dropped. [`PbGattLink`] adds the rule of the provisioning service: only Provisioning PDUs
//! (message type 0x03); anything else is an error and a disconnect (§5.2.2).
//!
//! PB-GATT has no Link ID, transaction numbers, FCS or acknowledgments: the link is the GATT
//! connection (opened by connecting and enabling notifications, closed by disconnecting), and
//! ATT provides reliable, ordered delivery.

use std::collections::VecDeque;
use std::time::Duration;

use super::BearerError;
use crate::time::Instant;
use crate::wire::{ProxyMessageType, ProxyPdu, Sar};

/// The Proxy protocol SAR timeout, MshPRT v1.1 §6.6: 20 s. The timer starts with the first
/// segment and restarts with each continuation (as Zephyr and ESP-IDF do).
pub const SAR_TIMEOUT: Duration = Duration::from_secs(20);

/// The smallest ATT_MTU (Core Specification Vol 3 Part F §3.2.8); smaller values are raised to
/// it.
pub const MIN_ATT_MTU: u16 = 23;

/// The largest message [`ProxySar`] reassembles. Provisioning PDUs are at most 1469 octets
/// (the PB-ADV limit, §5.3.1) and network PDUs 29; the cap bounds memory against a peer that
/// never sends a last segment.
pub const MAX_MESSAGE_LEN: usize = 2048;

#[derive(Debug)]
struct InProgress {
    message_type: ProxyMessageType,
    data: Vec<u8>,
    deadline: Instant,
}

/// Proxy protocol segmentation and reassembly for one GATT connection, MshPRT v1.1 §6.3.1.
#[derive(Debug)]
pub struct ProxySar {
    att_mtu: u16,
    rx: Option<InProgress>,
}

impl ProxySar {
    /// SAR for a connection with this ATT_MTU (raised to [`MIN_ATT_MTU`] if smaller). Each
    /// segment carries up to ATT_MTU − 3 (ATT header) − 1 (Proxy PDU header) octets.
    pub fn new(att_mtu: u16) -> Self {
        ProxySar {
            att_mtu: att_mtu.max(MIN_ATT_MTU),
            rx: None,
        }
    }

    /// The ATT_MTU in use.
    pub fn att_mtu(&self) -> u16 {
        self.att_mtu
    }

    /// Changes the ATT_MTU (after an MTU exchange); affects later [`ProxySar::segment`] calls.
    pub fn set_att_mtu(&mut self, att_mtu: u16) {
        self.att_mtu = att_mtu.max(MIN_ATT_MTU);
    }

    /// Octets of message data per segment: ATT_MTU − 4.
    pub fn segment_size(&self) -> usize {
        usize::from(self.att_mtu) - 4
    }

    /// Splits a message into Proxy PDUs, each one GATT write or notification (§6.3.1): one
    /// Complete PDU if it fits, else First, Continuation…, Last. An empty message gives one
    /// Complete PDU with no data.
    pub fn segment(&self, message_type: ProxyMessageType, pdu: &[u8]) -> Vec<Vec<u8>> {
        let size = self.segment_size();
        if pdu.len() <= size {
            return vec![emit(Sar::Complete, message_type, pdu)];
        }
        let chunks: Vec<&[u8]> = pdu.chunks(size).collect();
        // pdu.len() > size, so there are at least two chunks.
        let last = chunks.len() - 1;
        chunks
            .into_iter()
            .enumerate()
            .map(|(i, chunk)| {
                let sar = match i {
                    0 => Sar::First,
                    i if i == last => Sar::Last,
                    _ => Sar::Continuation,
                };
                emit(sar, message_type, chunk)
            })
            .collect()
    }

    /// Handles one received Proxy PDU (a GATT write or notification value) at `now`. Returns
    /// the message when it is complete.
    ///
    /// Errors, after which the connection must be dropped (§6.3.1) and the reassembly state is
    /// cleared: [`BearerError::EmptyProxyPdu`], [`BearerError::SarNotStarted`] (continuation or
    /// last without first), [`BearerError::SarInterrupted`] (complete or first while a message
    /// is in progress), [`BearerError::SarTypeMismatch`], [`BearerError::MessageTooLong`].
    pub fn handle_segment(
        &mut self,
        now: Instant,
        data: &[u8],
    ) -> Result<Option<(ProxyMessageType, Vec<u8>)>, BearerError> {
        let pdu = ProxyPdu::parse(data).map_err(|_| BearerError::EmptyProxyPdu)?;
        match (pdu.sar, self.rx.take()) {
            (Sar::Complete | Sar::First, Some(_)) => {
                Err(BearerError::SarInterrupted { sar: pdu.sar })
            }
            (Sar::Continuation | Sar::Last, None) => {
                Err(BearerError::SarNotStarted { sar: pdu.sar })
            }
            (Sar::Complete, None) => Ok(Some((pdu.message_type, pdu.data))),
            (Sar::First, None) => {
                check_len(pdu.data.len())?;
                self.rx = Some(InProgress {
                    message_type: pdu.message_type,
                    data: pdu.data,
                    deadline: now + SAR_TIMEOUT,
                });
                Ok(None)
            }
            (Sar::Continuation | Sar::Last, Some(mut rx)) => {
                if rx.message_type != pdu.message_type {
                    return Err(BearerError::SarTypeMismatch {
                        first: rx.message_type,
                        got: pdu.message_type,
                    });
                }
                check_len(rx.data.len().saturating_add(pdu.data.len()))?;
                rx.data.extend_from_slice(&pdu.data);
                if pdu.sar == Sar::Last {
                    Ok(Some((rx.message_type, rx.data)))
                } else {
                    rx.deadline = now + SAR_TIMEOUT;
                    self.rx = Some(rx);
                    Ok(None)
                }
            }
        }
    }

    /// Whether a segmented message is being reassembled.
    pub fn in_progress(&self) -> bool {
        self.rx.is_some()
    }

    /// Checks the SAR timer (§6.6): if a reassembly has waited [`SAR_TIMEOUT`] since its last
    /// segment, drops it and returns [`BearerError::SarTimeout`] (once); the connection must
    /// then be dropped. Otherwise (also when called early) does nothing.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<BearerError> {
        if self.rx.as_ref().is_some_and(|rx| rx.deadline <= now) {
            self.rx = None;
            Some(BearerError::SarTimeout)
        } else {
            None
        }
    }

    /// When the SAR timer fires, if a reassembly is in progress.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.rx.as_ref().map(|rx| rx.deadline)
    }
}

fn check_len(len: usize) -> Result<(), BearerError> {
    if len > MAX_MESSAGE_LEN {
        Err(BearerError::MessageTooLong {
            max: MAX_MESSAGE_LEN,
        })
    } else {
        Ok(())
    }
}

fn emit(sar: Sar, message_type: ProxyMessageType, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 1);
    ProxyPdu {
        sar,
        message_type,
        data: data.to_vec(),
    }
    .emit(&mut out);
    out
}

/// One PB-GATT link, MshPRT v1.1 §5.2.2: [`ProxySar`] restricted to Provisioning PDUs
/// (message type 0x03), with a transmit queue. Either end (provisioner writing Data In,
/// device notifying Data Out) uses it the same way.
///
/// A Proxy PDU of any other message type is [`BearerError::WrongMessageType`]: on the Mesh
/// Provisioning service the connection must then be dropped. Every error of
/// [`PbGattLink::handle_data`] and [`PbGattLink::handle_timeout`] means disconnect.
#[derive(Debug)]
pub struct PbGattLink {
    sar: ProxySar,
    tx: VecDeque<Vec<u8>>,
}

impl PbGattLink {
    /// A link over a GATT connection with this ATT_MTU.
    pub fn new(att_mtu: u16) -> Self {
        PbGattLink {
            sar: ProxySar::new(att_mtu),
            tx: VecDeque::new(),
        }
    }

    /// Changes the ATT_MTU (after an MTU exchange).
    pub fn set_att_mtu(&mut self, att_mtu: u16) {
        self.sar.set_att_mtu(att_mtu);
    }

    /// Queues one provisioning PDU, segmented to the MTU (§6.3.1).
    pub fn send(&mut self, pdu: &[u8]) {
        self.tx
            .extend(self.sar.segment(ProxyMessageType::PROVISIONING_PDU, pdu));
    }

    /// The next value to write (Data In) or notify (Data Out), in order.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.tx.pop_front()
    }

    /// Handles one received value at `now`; returns a complete provisioning PDU when there is
    /// one. The message type is checked on every segment, before reassembly.
    pub fn handle_data(
        &mut self,
        now: Instant,
        data: &[u8],
    ) -> Result<Option<Vec<u8>>, BearerError> {
        let header = data.first().ok_or(BearerError::EmptyProxyPdu)?;
        let message_type = ProxyMessageType(header & 0x3F);
        if message_type != ProxyMessageType::PROVISIONING_PDU {
            return Err(BearerError::WrongMessageType(message_type));
        }
        Ok(self.sar.handle_segment(now, data)?.map(|(_, pdu)| pdu))
    }

    /// The SAR timer (§6.6); see [`ProxySar::handle_timeout`].
    pub fn handle_timeout(&mut self, now: Instant) -> Option<BearerError> {
        self.sar.handle_timeout(now)
    }

    /// When [`PbGattLink::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.sar.poll_timeout()
    }
}
