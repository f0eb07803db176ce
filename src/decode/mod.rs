//! Decoding recorded captures (`meshprov decode`): pcap, pcapng and btsnoop files from
//! sniffers and HCI logs, turned into a timeline of mesh records.
//!
//! Three stages, each usable alone (a replay uses the first two):
//! - [`reader`]: [`CaptureReader`] reads pcap, pcapng and btsnoop files one packet at a time.
//! - [`frames`]: [`Extractor`] turns frames of link types 251, 256, 272 (LE link layer),
//!   201/187 and btsnoop (HCI) into [`MeshPacket`]s: mesh AD structures and the values of the
//!   mesh GATT characteristics, with L2CAP reassembly and ATT handle discovery.
//! - [`decoder`]: [`Decoder`] turns mesh packets into [`Record`]s: beacons, PB-ADV links and
//!   their reassembled provisioning PDUs, PB-GATT sessions, proxy PDUs, network PDUs and
//!   access messages, provisioning transcripts verified with the session secrets of a key
//!   sidecar ([`keys`]).
//!
//! [`decode_file`] runs all three over a file. Nothing here panics on any input: bad bytes
//! are a [`ReadError`] (the file itself) or an `undecodable` record (a packet in it).

pub mod decoder;
pub mod frames;
pub mod keys;
pub mod reader;

use std::path::Path;

pub use decoder::{DecodeOptions, DecodeStats, Decoder, Kind, Record};
pub use frames::{Characteristic, ConnId, Extractor, FrameStats, MeshPacket, MeshPacketKind};
pub use keys::{DecodeKeys, KeysError};
pub use reader::{CaptureReader, FileFormat, LinkType, RawPacket, ReadError};

/// The outcome of a whole-file decode.
#[derive(Debug, Clone, Default)]
pub struct DecodeSummary {
    /// The decoder's counts.
    pub stats: DecodeStats,
    /// The frame-level counts.
    pub frames: FrameStats,
    /// Device keys derived from verified transcripts (address, key).
    pub derived_device_keys: Vec<(u16, mesh_crypto::DevKey)>,
}

/// Decodes every packet `reader` gives; hands each record to `sink` as soon as it is complete
/// (the summary record last). On a read error midway, the records so far have been handed
/// over, the summary is still produced, and the error is returned with it.
pub fn decode_reader<R: std::io::Read>(
    reader: &mut CaptureReader<R>,
    keys: DecodeKeys,
    options: DecodeOptions,
    mut sink: impl FnMut(&Record),
) -> (DecodeSummary, Option<ReadError>) {
    let mut extractor = Extractor::new();
    for (h, c) in &keys.att_handles {
        extractor.set_handle(*h, *c);
    }
    let mut decoder = Decoder::new(keys, options);
    let mut packets = Vec::new();
    let mut error = None;
    loop {
        match reader.next_packet() {
            Ok(Some(p)) => {
                decoder.note_frame(p.time_ns);
                extractor.push(&p, &mut packets);
                for m in packets.drain(..) {
                    decoder.push_mesh(&m);
                    while let Some(r) = decoder.poll_record() {
                        sink(&r);
                    }
                }
            }
            Ok(None) => break,
            Err(e) => {
                error = Some(e);
                break;
            }
        }
    }
    let frames = extractor.stats();
    decoder.finish(&frames);
    while let Some(r) = decoder.poll_record() {
        sink(&r);
    }
    (
        DecodeSummary {
            stats: decoder.stats().clone(),
            frames,
            derived_device_keys: decoder.derived_device_keys().to_vec(),
        },
        error,
    )
}

/// Opens `path` and decodes it with [`decode_reader`]; `att_handles` are added to the key
/// file's. A file that cannot be opened or is no capture at all is an error before any
/// record.
pub fn decode_file(
    path: &Path,
    keys: DecodeKeys,
    options: DecodeOptions,
    sink: impl FnMut(&Record),
) -> Result<(DecodeSummary, Option<ReadError>), ReadError> {
    let mut reader = CaptureReader::open(path)?;
    Ok(decode_reader(&mut reader, keys, options, sink))
}

/// Decodes a capture held in memory, collecting the records (tests, small files).
pub fn decode_bytes(
    bytes: &[u8],
    keys: DecodeKeys,
    options: DecodeOptions,
) -> Result<(Vec<Record>, DecodeSummary, Option<ReadError>), ReadError> {
    let mut reader = CaptureReader::new(bytes)?;
    let mut records = Vec::new();
    let (summary, err) = decode_reader(&mut reader, keys, options, |r| records.push(r.clone()));
    Ok((records, summary, err))
}
