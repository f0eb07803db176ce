//! Capture file readers: classic pcap, pcapng and btsnoop, one packet at a time.
//!
//! Every reader streams from any [`Read`] (a 100 MB capture is never held in memory), checks
//! every length before it trusts it, and reports a malformed file with a typed
//! [`ReadError`] naming the byte offset — it never panics, whatever the bytes.
//!
//! Why not the `pcap-file` crate for reading (it writes our own captures): its pcapng reader
//! takes every Enhanced Packet Block timestamp for nanoseconds whatever the interface's
//! `if_tsresol` says (real sniffers write microseconds), it has no btsnoop, and a decoder that
//! must never panic on any bytes is easier to keep that way when the three readers share one
//! small, bounds-checked block loop. The formats are small:
//!
//! - pcap (`tcpdump` format): a 24-octet file header (magic `a1b2c3d4` for microseconds or
//!   `a1b23c4d` for nanoseconds, in either byte order; the link type in the low 16 bits of
//!   the last field), then 16-octet record headers (seconds, sub-seconds, captured and
//!   original lengths) each followed by the packet.
//! - pcapng (IETF draft-ietf-opsawg-pcapng): blocks `type ‖ total length ‖ body ‖ total
//!   length`, byte order set by each Section Header Block; Interface Description Blocks give
//!   each interface's link type and `if_tsresol`; Enhanced Packet Blocks and Simple Packet
//!   Blocks carry packets; other blocks are skipped.
//! - btsnoop (RFC 1761 with Bluetooth datalinks): a 16-octet header `"btsnoop\0"`, version 1,
//!   datalink 1001 (HCI without H4 type octet) or 1002 (H4); 24-octet big-endian records
//!   (original length, included length, flags, drops, timestamp in microseconds since
//!   0 AD) each followed by the packet. Flags bit 0: 0 sent, 1 received; bit 1: command or
//!   event (1001 only needs it, to tell them from ACL data).

use std::io::{self, BufReader, Read};
use std::path::Path;

/// Largest packet a reader accepts (a sniffer's packet is a few hundred octets; anything above
/// this is a corrupted length, not a packet worth allocating for).
pub const MAX_PACKET: usize = 256 * 1024;

/// Microseconds from 0 AD (btsnoop's epoch) to the Unix epoch.
const BTSNOOP_EPOCH_DELTA_US: u64 = 0x00dc_ddb3_0f2f_8000;

/// A link type (pcap `LINKTYPE_*`; btsnoop datalinks are mapped onto these).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LinkType(pub u32);

impl LinkType {
    /// 201 `LINKTYPE_BLUETOOTH_HCI_H4_WITH_PHDR`: a 4-octet direction (big-endian, 0 sent, 1
    /// received), then an H4 packet.
    pub const HCI_H4_WITH_PHDR: Self = Self(201);
    /// 187 `LINKTYPE_BLUETOOTH_HCI_H4`: an H4 packet, no direction.
    pub const HCI_H4: Self = Self(187);
    /// 251 `LINKTYPE_BLUETOOTH_LE_LL`: a link-layer packet from its access address to its CRC.
    pub const LE_LL: Self = Self(251);
    /// 256 `LINKTYPE_BLUETOOTH_LE_LL_WITH_PHDR`: a 10-octet RF pseudo-header, then as 251.
    pub const LE_LL_WITH_PHDR: Self = Self(256);
    /// 272 `LINKTYPE_NORDIC_BLE`: the nRF Sniffer's header, then as 251.
    pub const NORDIC_BLE: Self = Self(272);
    /// btsnoop datalink 1002 (H4), with the direction from the record's flags. Not a pcap
    /// link type: the number is btsnoop's.
    pub const BTSNOOP_H4: Self = Self(1002);
    /// btsnoop datalink 1001 (HCI without the H4 type octet; the flags say command/event or
    /// ACL). Not a pcap link type: the number is btsnoop's.
    pub const BTSNOOP_HCI: Self = Self(1001);

    /// Whether the decoder understands this link type.
    pub const fn is_supported(self) -> bool {
        matches!(self.0, 187 | 201 | 251 | 256 | 272 | 1001 | 1002)
    }
}

/// The container format of a capture file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// Classic pcap.
    Pcap,
    /// pcapng.
    PcapNg,
    /// btsnoop version 1.
    Btsnoop,
}

impl FileFormat {
    /// `pcap`, `pcapng` or `btsnoop`.
    pub const fn name(self) -> &'static str {
        match self {
            FileFormat::Pcap => "pcap",
            FileFormat::PcapNg => "pcapng",
            FileFormat::Btsnoop => "btsnoop",
        }
    }
}

/// Why a capture file could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: io::Error,
    },
    /// The file starts with none of the pcap, pcapng or btsnoop magic numbers.
    #[error("not a capture file: the first octets {magic} are no pcap, pcapng or btsnoop magic")]
    UnknownFormat {
        /// The first octets, hex.
        magic: String,
    },
    /// The file ends in the middle of a header or a packet.
    #[error("{format} file truncated at offset {offset}: {what} is cut short")]
    Truncated {
        /// The container format.
        format: &'static str,
        /// Byte offset of the structure that is cut short.
        offset: u64,
        /// What was being read.
        what: &'static str,
    },
    /// A length, version or other field is impossible.
    #[error("{format} file malformed at offset {offset}: {problem}")]
    Malformed {
        /// The container format.
        format: &'static str,
        /// Byte offset of the structure.
        offset: u64,
        /// What is wrong.
        problem: String,
    },
}

/// One packet as stored in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawPacket<'a> {
    /// 1-based packet number (Wireshark's frame number).
    pub number: u64,
    /// Capture time, nanoseconds since the Unix epoch (0 when the file gives none).
    pub time_ns: i128,
    /// The packet's link type.
    pub link: LinkType,
    /// The direction the file states, seen from the capturing host: `Some(true)` received,
    /// `Some(false)` sent (btsnoop flags); `None` when the format has none at this level.
    pub received: Option<bool>,
    /// For btsnoop 1001: flags bit 1 (command or event rather than data).
    pub command_or_event: bool,
    /// The packet's octets (captured length).
    pub data: &'a [u8],
}

/// A byte reader that counts its offset and turns short reads into [`ReadError::Truncated`].
struct Source<R> {
    inner: R,
    offset: u64,
    format: &'static str,
}

impl<R: Read> Source<R> {
    /// Fills `buf`; `Ok(false)` on a clean end of file before the first octet.
    fn fill(&mut self, buf: &mut [u8], what: &'static str) -> Result<bool, ReadError> {
        let mut got = 0;
        while got < buf.len() {
            match self.inner.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(ReadError::Io {
                        path: String::new(),
                        source: e,
                    });
                }
            }
        }
        let start = self.offset;
        self.offset += got as u64;
        if got == buf.len() {
            Ok(true)
        } else if got == 0 {
            Ok(false)
        } else {
            Err(ReadError::Truncated {
                format: self.format,
                offset: start,
                what,
            })
        }
    }

    /// Fills `buf` completely or fails (end of file included).
    fn exact(&mut self, buf: &mut [u8], what: &'static str) -> Result<(), ReadError> {
        let start = self.offset;
        if self.fill(buf, what)? || buf.is_empty() {
            Ok(())
        } else {
            Err(ReadError::Truncated {
                format: self.format,
                offset: start,
                what,
            })
        }
    }

    /// Skips `n` octets.
    fn skip(&mut self, n: u64, what: &'static str) -> Result<(), ReadError> {
        let start = self.offset;
        let copied = io::copy(&mut (&mut self.inner).take(n), &mut io::sink()).map_err(|e| {
            ReadError::Io {
                path: String::new(),
                source: e,
            }
        })?;
        self.offset += copied;
        if copied == n {
            Ok(())
        } else {
            Err(ReadError::Truncated {
                format: self.format,
                offset: start,
                what,
            })
        }
    }

    fn malformed(&self, at: u64, problem: impl Into<String>) -> ReadError {
        ReadError::Malformed {
            format: self.format,
            offset: at,
            problem: problem.into(),
        }
    }
}

/// Reads a `u32` in the given byte order from 4 octets.
fn u32_at(b: &[u8], at: usize, big: bool) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        a.copy_from_slice(s);
    }
    if big {
        u32::from_be_bytes(a)
    } else {
        u32::from_le_bytes(a)
    }
}

fn u16_at(b: &[u8], at: usize, big: bool) -> u16 {
    let mut a = [0u8; 2];
    if let Some(s) = b.get(at..at + 2) {
        a.copy_from_slice(s);
    }
    if big {
        u16::from_be_bytes(a)
    } else {
        u16::from_le_bytes(a)
    }
}

/// One pcapng interface: link type and the length of one timestamp unit in nanoseconds
/// (as a ratio, since `if_tsresol` may be a power of two).
#[derive(Debug, Clone, Copy)]
struct Interface {
    link: LinkType,
    /// Timestamp units per second.
    units_per_second: u128,
}

enum State {
    Pcap {
        big: bool,
        nanos: bool,
        link: LinkType,
    },
    PcapNg {
        big: bool,
        interfaces: Vec<Interface>,
    },
    Btsnoop {
        link: LinkType,
    },
}

/// Reads the packets of a pcap, pcapng or btsnoop file (the format is recognised from the
/// magic number).
pub struct CaptureReader<R> {
    src: Source<R>,
    state: State,
    format: FileFormat,
    buf: Vec<u8>,
    number: u64,
    path: String,
}

impl CaptureReader<BufReader<std::fs::File>> {
    /// Opens a capture file.
    pub fn open(path: &Path) -> Result<Self, ReadError> {
        let file = std::fs::File::open(path).map_err(|e| ReadError::Io {
            path: path.display().to_string(),
            source: e,
        })?;
        let mut r =
            Self::new(BufReader::with_capacity(1 << 16, file)).map_err(|e| with_path(e, path))?;
        r.path = path.display().to_string();
        Ok(r)
    }
}

fn with_path(e: ReadError, path: &Path) -> ReadError {
    match e {
        ReadError::Io { source, .. } => ReadError::Io {
            path: path.display().to_string(),
            source,
        },
        other => other,
    }
}

impl<R: Read> CaptureReader<R> {
    /// Reads the file header from `inner`.
    pub fn new(inner: R) -> Result<Self, ReadError> {
        let mut src = Source {
            inner,
            offset: 0,
            format: "capture",
        };
        let mut magic = [0u8; 4];
        if !src.fill(&mut magic, "file header")? {
            return Err(ReadError::UnknownFormat {
                magic: "(empty file)".into(),
            });
        }
        let (format, state, pending) = match magic {
            [0xd4, 0xc3, 0xb2, 0xa1] | [0x4d, 0x3c, 0xb2, 0xa1] => {
                src.format = "pcap";
                (
                    FileFormat::Pcap,
                    Self::pcap_header(&mut src, magic, false)?,
                    None,
                )
            }
            [0xa1, 0xb2, 0xc3, 0xd4] | [0xa1, 0xb2, 0x3c, 0x4d] => {
                src.format = "pcap";
                (
                    FileFormat::Pcap,
                    Self::pcap_header(&mut src, magic, true)?,
                    None,
                )
            }
            [0x0a, 0x0d, 0x0d, 0x0a] => {
                src.format = "pcapng";
                (
                    FileFormat::PcapNg,
                    State::PcapNg {
                        big: false,
                        interfaces: Vec::new(),
                    },
                    Some(magic),
                )
            }
            [b'b', b't', b's', b'n'] => {
                src.format = "btsnoop";
                let mut rest = [0u8; 12];
                src.exact(&mut rest, "btsnoop header")?;
                if &rest[..4] != b"oop\0" {
                    return Err(src.malformed(0, "bad btsnoop identification pattern"));
                }
                let version = u32_at(&rest, 4, true);
                if version != 1 {
                    return Err(src.malformed(8, format!("btsnoop version {version}, not 1")));
                }
                let datalink = u32_at(&rest, 8, true);
                let link = match datalink {
                    1001 => LinkType::BTSNOOP_HCI,
                    1002 => LinkType::BTSNOOP_H4,
                    other => {
                        return Err(src.malformed(
                            12,
                            format!(
                                "btsnoop datalink {other} (only 1001 HCI and 1002 H4 are Bluetooth HCI)"
                            ),
                        ));
                    }
                };
                (FileFormat::Btsnoop, State::Btsnoop { link }, None)
            }
            other => {
                return Err(ReadError::UnknownFormat {
                    magic: hex::encode(other),
                });
            }
        };
        let mut r = Self {
            src,
            state,
            format,
            buf: Vec::new(),
            number: 0,
            path: String::new(),
        };
        if pending.is_some() {
            // pcapng: the first Section Header Block is the file header; read it now, so
            // that a file cut inside it is refused before any packet.
            let mut len_bytes = [0u8; 4];
            r.src.exact(&mut len_bytes, "pcapng section header")?;
            r.section_header(0, len_bytes)?;
        }
        Ok(r)
    }

    fn pcap_header(src: &mut Source<R>, magic: [u8; 4], big: bool) -> Result<State, ReadError> {
        let mut rest = [0u8; 20];
        src.exact(&mut rest, "pcap file header")?;
        let major = u16_at(&rest, 0, big);
        if major != 2 {
            return Err(src.malformed(4, format!("pcap major version {major}, not 2")));
        }
        let nanos = matches!(magic, [0x4d, 0x3c, 0xb2, 0xa1] | [0xa1, 0xb2, 0x3c, 0x4d]);
        let link = LinkType(u32_at(&rest, 16, big) & 0x0fff_ffff);
        Ok(State::Pcap { big, nanos, link })
    }

    /// The container format.
    pub fn format(&self) -> FileFormat {
        self.format
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.src.offset
    }

    /// The next packet, `Ok(None)` at the end of the file.
    pub fn next_packet(&mut self) -> Result<Option<RawPacket<'_>>, ReadError> {
        let path = self.path.clone();
        let r = self.next_inner();
        match r {
            Err(e) => Err(with_path(e, Path::new(&path))),
            Ok(None) => Ok(None),
            Ok(Some(meta)) => {
                self.number += 1;
                Ok(Some(RawPacket {
                    number: self.number,
                    time_ns: meta.time_ns,
                    link: meta.link,
                    received: meta.received,
                    command_or_event: meta.command_or_event,
                    data: &self.buf[..meta.len],
                }))
            }
        }
    }

    fn next_inner(&mut self) -> Result<Option<Meta>, ReadError> {
        match &mut self.state {
            State::Pcap { big, nanos, link } => {
                let (big, nanos, link) = (*big, *nanos, *link);
                let at = self.src.offset;
                let mut h = [0u8; 16];
                if !self.src.fill(&mut h, "pcap record header")? {
                    return Ok(None);
                }
                let secs = u32_at(&h, 0, big);
                let sub = u32_at(&h, 4, big);
                let incl = u32_at(&h, 8, big) as usize;
                if incl > MAX_PACKET {
                    return Err(self
                        .src
                        .malformed(at, format!("record length {incl} is not plausible")));
                }
                read_into(&mut self.src, &mut self.buf, incl, "pcap packet")?;
                let sub_ns = if nanos {
                    i128::from(sub)
                } else {
                    i128::from(sub) * 1000
                };
                Ok(Some(Meta {
                    time_ns: i128::from(secs) * 1_000_000_000 + sub_ns,
                    link,
                    received: None,
                    command_or_event: false,
                    len: incl,
                }))
            }
            State::Btsnoop { link } => {
                let link = *link;
                let at = self.src.offset;
                let mut h = [0u8; 24];
                if !self.src.fill(&mut h, "btsnoop record header")? {
                    return Ok(None);
                }
                let incl = u32_at(&h, 4, true) as usize;
                let flags = u32_at(&h, 8, true);
                let ts = u64::from(u32_at(&h, 16, true)) << 32 | u64::from(u32_at(&h, 20, true));
                if incl > MAX_PACKET {
                    return Err(self
                        .src
                        .malformed(at, format!("record length {incl} is not plausible")));
                }
                read_into(&mut self.src, &mut self.buf, incl, "btsnoop packet")?;
                let unix_us = i128::from(ts) - i128::from(BTSNOOP_EPOCH_DELTA_US);
                Ok(Some(Meta {
                    time_ns: unix_us * 1000,
                    link,
                    received: Some(flags & 1 != 0),
                    command_or_event: flags & 2 != 0,
                    len: incl,
                }))
            }
            State::PcapNg { .. } => self.next_pcapng(),
        }
    }

    /// Reads the rest of a Section Header Block (after its type and length): the byte-order
    /// magic decides the byte order of the section; its interfaces start afresh.
    fn section_header(&mut self, at: u64, len_bytes: [u8; 4]) -> Result<(), ReadError> {
        let mut bom = [0u8; 4];
        self.src.exact(&mut bom, "section header")?;
        let big = match bom {
            [0x1a, 0x2b, 0x3c, 0x4d] => true,
            [0x4d, 0x3c, 0x2b, 0x1a] => false,
            _ => return Err(self.src.malformed(at, "bad byte-order magic")),
        };
        let total = u32_at(&len_bytes, 0, big) as usize;
        if total < 28 || !total.is_multiple_of(4) || total > MAX_PACKET {
            return Err(self
                .src
                .malformed(at, format!("section header length {total}")));
        }
        self.src.skip((total - 12) as u64, "section header")?;
        self.state = State::PcapNg {
            big,
            interfaces: Vec::new(),
        };
        Ok(())
    }

    fn next_pcapng(&mut self) -> Result<Option<Meta>, ReadError> {
        loop {
            let at = self.src.offset;
            let mut ty_bytes = [0u8; 4];
            if !self.src.fill(&mut ty_bytes, "pcapng block type")? {
                return Ok(None);
            }
            let mut len_bytes = [0u8; 4];
            self.src.exact(&mut len_bytes, "pcapng block length")?;
            if ty_bytes == [0x0a, 0x0d, 0x0d, 0x0a] {
                self.section_header(at, len_bytes)?;
                continue;
            }
            let State::PcapNg { big, .. } = &self.state else {
                return Ok(None);
            };
            let big = *big;
            let ty = u32_at(&ty_bytes, 0, big);
            let total = u32_at(&len_bytes, 0, big) as usize;
            if total < 12 || !total.is_multiple_of(4) || total > MAX_PACKET + 64 {
                return Err(self.src.malformed(at, format!("block length {total}")));
            }
            let body_len = total - 12;
            read_into(&mut self.src, &mut self.buf, body_len, "pcapng block")?;
            let mut trailer = [0u8; 4];
            self.src.exact(&mut trailer, "pcapng block trailer")?;
            if u32_at(&trailer, 0, big) as usize != total {
                return Err(self
                    .src
                    .malformed(at, "block trailer length differs from the header's"));
            }
            let body = &self.buf[..body_len];
            let State::PcapNg { interfaces, .. } = &mut self.state else {
                return Ok(None);
            };
            match ty {
                // Interface Description Block.
                1 => {
                    if body.len() < 8 {
                        return Err(self.src.malformed(at, "interface description too short"));
                    }
                    let link = LinkType(u32::from(u16_at(body, 0, big)));
                    let mut units_per_second = 1_000_000u128;
                    let mut opts = &body[8..];
                    while opts.len() >= 4 {
                        let code = u16_at(opts, 0, big);
                        let len = usize::from(u16_at(opts, 2, big));
                        let Some(value) = opts.get(4..4 + len) else {
                            break;
                        };
                        if code == 0 {
                            break;
                        }
                        if code == 9
                            && let Some(&r) = value.first()
                        {
                            let exp = u32::from(r & 0x7f);
                            let base: u128 = if r & 0x80 != 0 { 2 } else { 10 };
                            units_per_second = base.checked_pow(exp).unwrap_or(0);
                        }
                        let padded = (len + 3) & !3;
                        opts = opts.get(4 + padded..).unwrap_or(&[]);
                    }
                    if units_per_second == 0 {
                        return Err(self.src.malformed(at, "if_tsresol out of range"));
                    }
                    interfaces.push(Interface {
                        link,
                        units_per_second,
                    });
                }
                // Enhanced Packet Block.
                6 => {
                    if body.len() < 20 {
                        return Err(self.src.malformed(at, "enhanced packet block too short"));
                    }
                    let iface = u32_at(body, 0, big) as usize;
                    let ts =
                        u64::from(u32_at(body, 4, big)) << 32 | u64::from(u32_at(body, 8, big));
                    let caplen = u32_at(body, 12, big) as usize;
                    if caplen > body.len() - 20 {
                        return Err(self
                            .src
                            .malformed(at, format!("captured length {caplen} exceeds the block")));
                    }
                    let Some(i) = interfaces.get(iface).copied() else {
                        return Err(self
                            .src
                            .malformed(at, format!("packet on undeclared interface {iface}")));
                    };
                    let time_ns = (u128::from(ts) * 1_000_000_000 / i.units_per_second) as i128;
                    // Move the packet data to the front of the buffer.
                    self.buf.copy_within(20..20 + caplen, 0);
                    return Ok(Some(Meta {
                        time_ns,
                        link: i.link,
                        received: None,
                        command_or_event: false,
                        len: caplen,
                    }));
                }
                // Simple Packet Block: interface 0, no timestamp.
                3 => {
                    if body.len() < 4 {
                        return Err(self.src.malformed(at, "simple packet block too short"));
                    }
                    let orig = u32_at(body, 0, big) as usize;
                    let caplen = orig.min(body.len() - 4);
                    let Some(i) = interfaces.first().copied() else {
                        return Err(self.src.malformed(at, "packet before any interface"));
                    };
                    self.buf.copy_within(4..4 + caplen, 0);
                    return Ok(Some(Meta {
                        time_ns: 0,
                        link: i.link,
                        received: None,
                        command_or_event: false,
                        len: caplen,
                    }));
                }
                // Anything else (statistics, name resolution, custom, obsolete Packet Block).
                _ => continue,
            }
        }
    }
}

struct Meta {
    time_ns: i128,
    link: LinkType,
    received: Option<bool>,
    command_or_event: bool,
    len: usize,
}

fn read_into<R: Read>(
    src: &mut Source<R>,
    buf: &mut Vec<u8>,
    len: usize,
    what: &'static str,
) -> Result<(), ReadError> {
    if buf.len() < len {
        buf.resize(len, 0);
    }
    src.exact(&mut buf[..len], what)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pcap(link: u32, packets: &[&[u8]]) -> Vec<u8> {
        let mut f = vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0];
        f.extend_from_slice(&[0; 8]);
        f.extend_from_slice(&0xffffu32.to_le_bytes());
        f.extend_from_slice(&link.to_le_bytes());
        for (i, p) in packets.iter().enumerate() {
            f.extend_from_slice(&(i as u32 + 1).to_le_bytes());
            f.extend_from_slice(&500u32.to_le_bytes());
            f.extend_from_slice(&(p.len() as u32).to_le_bytes());
            f.extend_from_slice(&(p.len() as u32).to_le_bytes());
            f.extend_from_slice(p);
        }
        f
    }

    #[test]
    fn pcap_packets_and_times() {
        let f = pcap(256, &[&[1, 2, 3], &[4]]);
        let mut r = CaptureReader::new(&f[..]).unwrap();
        assert_eq!(r.format(), FileFormat::Pcap);
        let p = r.next_packet().unwrap().unwrap();
        assert_eq!(
            (p.number, p.data, p.link),
            (1, &[1u8, 2, 3][..], LinkType(256))
        );
        assert_eq!(p.time_ns, 1_000_500_000);
        let p = r.next_packet().unwrap().unwrap();
        assert_eq!((p.number, p.data), (2, &[4u8][..]));
        assert!(r.next_packet().unwrap().is_none());
    }

    #[test]
    fn truncated_pcap_is_an_error() {
        let f = pcap(256, &[&[1, 2, 3]]);
        let mut r = CaptureReader::new(&f[..f.len() - 1]).unwrap();
        assert!(matches!(r.next_packet(), Err(ReadError::Truncated { .. })));
        assert!(matches!(
            CaptureReader::new(&f[..10]),
            Err(ReadError::Truncated { .. })
        ));
        assert!(matches!(
            CaptureReader::new(&b"hello world"[..]),
            Err(ReadError::UnknownFormat { .. })
        ));
    }

    #[test]
    fn btsnoop_header_and_record() {
        let mut f = b"btsnoop\0".to_vec();
        f.extend_from_slice(&1u32.to_be_bytes());
        f.extend_from_slice(&1002u32.to_be_bytes());
        f.extend_from_slice(&3u32.to_be_bytes());
        f.extend_from_slice(&3u32.to_be_bytes());
        f.extend_from_slice(&3u32.to_be_bytes()); // received, event
        f.extend_from_slice(&0u32.to_be_bytes());
        f.extend_from_slice(&(BTSNOOP_EPOCH_DELTA_US + 2_000_000).to_be_bytes());
        f.extend_from_slice(&[4, 0x0e, 0]);
        let mut r = CaptureReader::new(&f[..]).unwrap();
        let p = r.next_packet().unwrap().unwrap();
        assert_eq!(p.received, Some(true));
        assert!(p.command_or_event);
        assert_eq!(p.time_ns, 2_000_000_000);
        assert_eq!(p.link, LinkType::BTSNOOP_H4);
        assert!(r.next_packet().unwrap().is_none());
    }
}
