//! Provisioning records for certificate-based provisioning (MshPRT v1.1 §5.4.1.11–§5.4.1.14,
//! §5.4.2; reference §7): the provisioner's fetch and reassembly ([`Fetcher`]) and the
//! device's serving of its records ([`serve_list`], [`serve_request`]).
//!
//! Ordering: records are exchanged after the link opens and **before** Provisioning Invite
//! (reference §7: the ESP-IDF device accepts Records Get / Record Request only while it
//! expects Invite). The provisioner sends Records Get, checks the Records List, then fetches
//! the Device Certificate (0x0001) and every listed Intermediate Certificate (0x0002–0x0010,
//! in ascending ID order), each with Record Requests whose offset grows by the octets received
//! until Fragment Offset + length = Total Length.
//!
//! Bounds chosen here (the specification's upper bound on Fragment Maximum Size is UNVERIFIED):
//! - [`DEFAULT_FRAGMENT_SIZE`] = 56 on PB-ADV, ESP-IDF's `CONFIG_BLE_MESH_RECORD_FRAG_MAX_SIZE`
//!   default; [`PB_ADV_MAX_FRAGMENT_SIZE`] = 57 = a 65-octet provisioning PDU buffer (the size
//!   of the Public Key PDU, which is what most stacks allocate) minus the 8 octets of type and
//!   Record Response header. Our own PB-ADV bearer carries up to 1469 octets, but real devices
//!   do not: use ≤ 57 on PB-ADV.
//! - On PB-GATT, [`RecordsPolicy::pb_gatt`] sizes a fragment so that the whole Record Response
//!   fits one unsegmented Proxy PDU: ATT_MTU − 3 (ATT header) − 1 (Proxy header) − 8.
//! - [`MAX_FRAGMENT_SIZE`] = 1024: the largest Fragment Maximum Size a session asks for.
//! - [`MAX_RECORD_LEN`] = 4096 octets per record: a P-256 device certificate is typically
//!   400–900 octets; a Total Length above the cap is refused
//!   ([`ProvisioningError::RecordTooLarge`]) so that a device cannot make us buffer 64 KiB per
//!   record (16 records at most: 1 device certificate and 15 intermediates).

use std::collections::VecDeque;

use crate::wire::{
    PduType, ProvisioningPdu, RecordId, RecordRequest, RecordResponse, RecordStatus, RecordsList,
};

use super::error::ProvisioningError;

/// Fragment Maximum Size used on PB-ADV by default (ESP-IDF's default; reference §7).
pub const DEFAULT_FRAGMENT_SIZE: u16 = 56;

/// The largest fragment that fits a 65-octet provisioning PDU buffer (65 − 8 header octets),
/// the practical limit on PB-ADV.
pub const PB_ADV_MAX_FRAGMENT_SIZE: u16 = 57;

/// The largest Fragment Maximum Size a provisioner session asks for (PB-GATT with a large MTU).
pub const MAX_FRAGMENT_SIZE: u16 = 1024;

/// The largest record accepted, in octets (Total Length cap).
pub const MAX_RECORD_LEN: u16 = 4096;

/// Octets of a Record Response PDU before the data: type octet, Status, Record ID, Fragment
/// Offset, Total Length.
pub const RECORD_RESPONSE_HEADER_LEN: u16 = 8;

/// Whether and how a provisioner fetches the device's provisioning records before Invite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecordsPolicy {
    /// No records: the session starts with Invite (the behaviour of Mesh 1.0).
    #[default]
    None,
    /// Fetch the Device Certificate and the Intermediate Certificates before Invite, hand them
    /// to the caller ([`super::Event::RecordsReceived`]) and use the public key the caller
    /// takes from the certificate as the device's OOB public key.
    Fetch {
        /// Fragment Maximum Size of each Record Request, 1..=[`MAX_FRAGMENT_SIZE`]
        /// ([`DEFAULT_FRAGMENT_SIZE`] on PB-ADV).
        fragment_size: u16,
    },
}

impl RecordsPolicy {
    /// Fetch with the PB-ADV default fragment size (56).
    pub const fn pb_adv() -> Self {
        RecordsPolicy::Fetch {
            fragment_size: DEFAULT_FRAGMENT_SIZE,
        }
    }

    /// Fetch with fragments that fit one unsegmented Proxy PDU at this ATT_MTU:
    /// `att_mtu − 12`, at least [`DEFAULT_FRAGMENT_SIZE`] (Proxy SAR carries it anyway) and at
    /// most [`MAX_FRAGMENT_SIZE`].
    pub fn pb_gatt(att_mtu: u16) -> Self {
        let fit = att_mtu.saturating_sub(3 + 1 + RECORD_RESPONSE_HEADER_LEN);
        RecordsPolicy::Fetch {
            fragment_size: fit.clamp(DEFAULT_FRAGMENT_SIZE, MAX_FRAGMENT_SIZE),
        }
    }

    /// Whether records are fetched.
    pub const fn is_fetch(&self) -> bool {
        matches!(self, RecordsPolicy::Fetch { .. })
    }
}

/// A record's name for people: "Device Certificate (0x0001)", "Intermediate Certificate 3
/// (0x0004)", "RFU record 0x0042".
pub fn record_name(id: RecordId) -> String {
    match (id.intermediate_number(), id.name()) {
        (Some(n), _) => format!("Intermediate Certificate {n} ({:#06x})", id.0),
        (None, Some(name)) => format!("{name} ({:#06x})", id.0),
        (None, None) => format!("RFU record {:#06x}", id.0),
    }
}

/// What the records exchange delivered to the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Received {
    pub(crate) device_certificate: Vec<u8>,
    pub(crate) intermediates: Vec<Vec<u8>>,
    pub(crate) list: Vec<RecordId>,
}

/// The next step of a fetch.
#[derive(Debug)]
pub(crate) enum Step {
    /// Send this Record Request.
    Request(RecordRequest),
    /// Every record is here.
    Done(Received),
}

/// The provisioner's fetch of the certificate records: one record at a time, one fragment at a
/// time.
#[derive(Debug)]
pub(crate) struct Fetcher {
    fragment_size: u16,
    list: Vec<RecordId>,
    /// The record being fetched.
    current: RecordId,
    /// Records still to fetch after `current`.
    queue: VecDeque<RecordId>,
    /// What arrived of `current`.
    buf: Vec<u8>,
    /// Total Length of `current`, from its first fragment.
    total: Option<u16>,
    /// Records complete, in fetch order (device certificate first).
    done: Vec<Vec<u8>>,
}

impl Fetcher {
    /// Checks the Records List (§5.4.1.14) and returns the fetcher with its first request.
    pub(crate) fn start(
        list: RecordsList,
        fragment_size: u16,
    ) -> Result<(Self, RecordRequest), ProvisioningError> {
        let ids = list.record_ids;
        for (i, id) in ids.iter().enumerate() {
            if ids[..i].contains(id) {
                return Err(ProvisioningError::InvalidRecordsList(
                    "a record ID appears twice",
                ));
            }
        }
        if !ids.contains(&RecordId::DEVICE_CERTIFICATE) {
            return Err(ProvisioningError::MissingRecord(
                RecordId::DEVICE_CERTIFICATE,
            ));
        }
        let mut intermediates: Vec<RecordId> = ids
            .iter()
            .copied()
            .filter(|id| id.intermediate_number().is_some())
            .collect();
        intermediates.sort_unstable();
        let fetcher = Fetcher {
            fragment_size,
            list: ids,
            current: RecordId::DEVICE_CERTIFICATE,
            queue: intermediates.into(),
            buf: Vec::new(),
            total: None,
            done: Vec::new(),
        };
        let req = fetcher.request();
        Ok((fetcher, req))
    }

    fn request(&self) -> RecordRequest {
        RecordRequest {
            record_id: self.current,
            // Below MAX_RECORD_LEN, checked on every fragment.
            fragment_offset: u16::try_from(self.buf.len()).unwrap_or(u16::MAX),
            fragment_max_size: self.fragment_size,
        }
    }

    /// One Record Response (§5.4.1.12), checked against the request it answers.
    pub(crate) fn on_response(&mut self, rsp: RecordResponse) -> Result<Step, ProvisioningError> {
        let record = self.current;
        let offset = u16::try_from(self.buf.len()).unwrap_or(u16::MAX);
        let bad = |reason| ProvisioningError::InvalidRecordResponse { record, reason };
        if rsp.record_id != record {
            return Err(bad("it answers another Record ID than the one requested"));
        }
        if rsp.fragment_offset != offset {
            return Err(bad("its Fragment Offset is not the one requested"));
        }
        match rsp.status {
            RecordStatus::SUCCESS => {}
            RecordStatus::NOT_PRESENT => return Err(ProvisioningError::RecordNotPresent(record)),
            RecordStatus::OFFSET_OUT_OF_BOUNDS => {
                return Err(ProvisioningError::RecordOffsetOutOfBounds { record, offset });
            }
            _ => return Err(bad("its Status is RFU")),
        }
        let total = rsp.total_length;
        match self.total {
            Some(first) if first != total => {
                return Err(ProvisioningError::RecordTotalLengthChanged {
                    record,
                    first,
                    now: total,
                });
            }
            Some(_) => {}
            None => {
                if total == 0 {
                    return Err(bad("its Total Length is 0"));
                }
                if total > MAX_RECORD_LEN {
                    return Err(ProvisioningError::RecordTooLarge {
                        record,
                        total_length: total,
                    });
                }
                self.total = Some(total);
            }
        }
        let end = usize::from(offset) + rsp.data.len();
        if end > usize::from(total) {
            return Err(ProvisioningError::RecordFragmentOutOfBounds {
                record,
                offset,
                len: rsp.data.len(),
                total_length: total,
            });
        }
        if rsp.data.len() > usize::from(self.fragment_size) {
            return Err(bad(
                "its fragment is longer than the Fragment Maximum Size requested",
            ));
        }
        if rsp.data.is_empty() {
            return Err(ProvisioningError::RecordTruncated {
                record,
                received: offset,
                total_length: total,
            });
        }
        self.buf.extend_from_slice(&rsp.data);
        if self.buf.len() < usize::from(total) {
            return Ok(Step::Request(self.request()));
        }
        self.done.push(core::mem::take(&mut self.buf));
        self.total = None;
        match self.queue.pop_front() {
            Some(next) => {
                self.current = next;
                Ok(Step::Request(self.request()))
            }
            None => {
                let mut records = core::mem::take(&mut self.done).into_iter();
                let device_certificate = records.next().unwrap_or_default();
                Ok(Step::Done(Received {
                    device_certificate,
                    intermediates: records.collect(),
                    list: core::mem::take(&mut self.list),
                }))
            }
        }
    }
}

/// Before parsing: a Record Response with Status Success whose data runs past its Total Length
/// is a records error of its own ([`ProvisioningError::RecordFragmentOutOfBounds`]), not just a
/// malformed PDU, so that the installer hears what the device did.
pub(crate) fn fragment_out_of_bounds(bytes: &[u8]) -> Option<ProvisioningError> {
    if bytes.len() < usize::from(RECORD_RESPONSE_HEADER_LEN)
        || PduType(bytes[0]) != PduType::RECORD_RESPONSE
        || RecordStatus(bytes[1]) != RecordStatus::SUCCESS
    {
        return None;
    }
    let record = RecordId(u16::from_be_bytes([bytes[2], bytes[3]]));
    let offset = u16::from_be_bytes([bytes[4], bytes[5]]);
    let total_length = u16::from_be_bytes([bytes[6], bytes[7]]);
    let len = bytes.len() - usize::from(RECORD_RESPONSE_HEADER_LEN);
    (usize::from(offset) + len > usize::from(total_length)).then_some(
        ProvisioningError::RecordFragmentOutOfBounds {
            record,
            offset,
            len,
            total_length,
        },
    )
}

/// Misbehaviour a test device can be configured with ([`super::DeviceConfig::records_fault`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordsFault {
    /// Fragments after the first of a record report a Total Length one octet larger.
    LieTotalLength,
    /// The last fragment of a record carries one octet beyond Total Length.
    OutOfBoundsFragment,
    /// Total Length claims 100 octets more than the record has; requests past the real end
    /// are answered with Success and no data.
    TruncateRecord,
    /// This record stays in the Records List, but a Record Request for it is answered
    /// Requested Record Is Not Present.
    OmitRecord(u16),
}

/// The device's Records List: Provisioning Extensions 0 and its record IDs in ascending order
/// (§5.4.1.14).
pub(crate) fn serve_list(records: &[(RecordId, Vec<u8>)]) -> ProvisioningPdu {
    let mut record_ids: Vec<RecordId> = records.iter().map(|(id, _)| *id).collect();
    record_ids.sort_unstable();
    record_ids.dedup();
    ProvisioningPdu::RecordsList(RecordsList {
        provisioning_extensions: 0,
        record_ids,
    })
}

/// The device's answer to a Record Request (§5.4.1.12): the fragment of
/// min(Fragment Maximum Size, remaining) octets at the offset, or Requested Record Is Not
/// Present, or Requested Offset Is Out Of Bounds (an offset at or past the end of a non-empty
/// record). Records longer than 65535 octets are served truncated to 65535.
pub(crate) fn serve_request(
    records: &[(RecordId, Vec<u8>)],
    req: RecordRequest,
    fault: Option<RecordsFault>,
) -> ProvisioningPdu {
    let record = records
        .iter()
        .find(|(id, _)| *id == req.record_id)
        .map(|(_, data)| &data[..data.len().min(usize::from(u16::MAX))]);
    let omitted = fault == Some(RecordsFault::OmitRecord(req.record_id.0));
    let response = |status, total_length, data| {
        ProvisioningPdu::RecordResponse(RecordResponse {
            status,
            record_id: req.record_id,
            fragment_offset: req.fragment_offset,
            total_length,
            data,
        })
    };
    let Some(record) = record.filter(|_| !omitted) else {
        return response(RecordStatus::NOT_PRESENT, 0, Vec::new());
    };
    // At most u16::MAX: truncated above.
    let len = record.len() as u16;
    let offset = usize::from(req.fragment_offset);
    let claimed = match fault {
        Some(RecordsFault::TruncateRecord) => len.saturating_add(100),
        Some(RecordsFault::LieTotalLength) if offset > 0 => len.saturating_add(1),
        _ => len,
    };
    if offset >= record.len() {
        if fault == Some(RecordsFault::TruncateRecord) && req.fragment_offset < claimed {
            return response(RecordStatus::SUCCESS, claimed, Vec::new());
        }
        if !(offset == 0 && record.is_empty()) {
            return response(RecordStatus::OFFSET_OUT_OF_BOUNDS, len, Vec::new());
        }
    }
    let end = record
        .len()
        .min(offset + usize::from(req.fragment_max_size));
    let mut data = record[offset..end].to_vec();
    if fault == Some(RecordsFault::OutOfBoundsFragment) && end == record.len() {
        data.push(0);
    }
    response(RecordStatus::SUCCESS, claimed, data)
}
