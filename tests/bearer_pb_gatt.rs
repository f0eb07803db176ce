//! PB-GATT (MshPRT v1.1 §5.2.2): Proxy protocol SAR (§6.3.1) and its timeout (§6.6) through
//! the public API.

use std::time::Duration;

use meshprov::bearer::BearerError;
use meshprov::bearer::pb_gatt::{MAX_MESSAGE_LEN, PbGattLink, ProxySar, SAR_TIMEOUT};
use meshprov::time::Instant;
use meshprov::wire::{ProxyMessageType, ProxyPdu, Sar};
use proptest::prelude::*;

const PROV: ProxyMessageType = ProxyMessageType::PROVISIONING_PDU;

fn pdu(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + len) as u8).collect()
}

#[test]
fn segment_and_reassemble_at_mtu_23_69_517() {
    for mtu in [23u16, 69, 517] {
        let tx = ProxySar::new(mtu);
        let size = usize::from(mtu) - 4;
        assert_eq!(tx.segment_size(), size);
        for len in 1..=100 {
            let message = pdu(len);
            let segments = tx.segment(PROV, &message);
            assert_eq!(segments.len(), len.div_ceil(size), "mtu {mtu} len {len}");
            let sars: Vec<Sar> = segments
                .iter()
                .map(|s| ProxyPdu::parse(s).unwrap().sar)
                .collect();
            if segments.len() == 1 {
                assert_eq!(sars, [Sar::Complete]);
            } else {
                assert_eq!(sars[0], Sar::First);
                assert_eq!(*sars.last().unwrap(), Sar::Last);
                assert!(
                    sars[1..sars.len() - 1]
                        .iter()
                        .all(|s| *s == Sar::Continuation)
                );
            }
            for s in &segments {
                assert!(s.len() <= usize::from(mtu) - 3, "fits one ATT write");
                assert_eq!(s[0] & 0x3F, 0x03);
            }
            let mut rx = ProxySar::new(mtu);
            let t = Instant::from_millis(len as u64);
            let mut out = None;
            for (i, s) in segments.iter().enumerate() {
                let r = rx.handle_segment(t, s).unwrap();
                if i + 1 < segments.len() {
                    assert_eq!(r, None);
                    assert_eq!(rx.poll_timeout(), Some(t + SAR_TIMEOUT));
                } else {
                    out = r;
                }
            }
            assert_eq!(out, Some((PROV, message)));
            assert_eq!(rx.poll_timeout(), None);
        }
    }
}

#[test]
fn mtu_below_23_is_raised() {
    let sar = ProxySar::new(10);
    assert_eq!(sar.att_mtu(), 23);
    assert_eq!(sar.segment_size(), 19);
    let mut sar = ProxySar::new(0);
    sar.set_att_mtu(100);
    assert_eq!(sar.segment_size(), 96);
}

#[test]
fn empty_message_is_one_complete_pdu() {
    let sar = ProxySar::new(23);
    assert_eq!(sar.segment(PROV, &[]), vec![vec![0x03]]);
    let mut rx = ProxySar::new(23);
    assert_eq!(
        rx.handle_segment(Instant::ZERO, &[0x03]),
        Ok(Some((PROV, vec![])))
    );
}

#[test]
fn sar_sequence_violations() {
    let t = Instant::ZERO;
    let segs = ProxySar::new(23).segment(PROV, &pdu(65));
    assert_eq!(segs.len(), 4);
    let mut rx = ProxySar::new(23);
    // Continuation or last without first.
    assert_eq!(
        rx.handle_segment(t, &segs[1]),
        Err(BearerError::SarNotStarted {
            sar: Sar::Continuation
        })
    );
    assert_eq!(
        rx.handle_segment(t, &segs[3]),
        Err(BearerError::SarNotStarted { sar: Sar::Last })
    );
    // First while one is in progress.
    assert_eq!(rx.handle_segment(t, &segs[0]), Ok(None));
    assert_eq!(
        rx.handle_segment(t, &segs[0]),
        Err(BearerError::SarInterrupted { sar: Sar::First })
    );
    assert!(!rx.in_progress(), "state cleared after an error");
    // Complete while one is in progress.
    assert_eq!(rx.handle_segment(t, &segs[0]), Ok(None));
    assert_eq!(
        rx.handle_segment(t, &[0x03, 1, 2]),
        Err(BearerError::SarInterrupted { sar: Sar::Complete })
    );
    // Type change mid-message.
    assert_eq!(rx.handle_segment(t, &segs[0]), Ok(None));
    let mut other = segs[1].clone();
    other[0] &= 0xC0; // message type 0x00 (Network PDU)
    assert_eq!(
        rx.handle_segment(t, &other),
        Err(BearerError::SarTypeMismatch {
            first: PROV,
            got: ProxyMessageType::NETWORK_PDU
        })
    );
    assert_eq!(rx.handle_segment(t, &[]), Err(BearerError::EmptyProxyPdu));
    for e in [
        BearerError::SarNotStarted { sar: Sar::Last },
        BearerError::SarTimeout,
        BearerError::EmptyProxyPdu,
    ] {
        assert!(e.requires_disconnect());
        assert!(!e.to_string().is_empty());
    }
}

#[test]
fn overlong_message_is_refused() {
    let mut rx = ProxySar::new(517);
    let t = Instant::ZERO;
    let chunk = vec![0u8; 513];
    let mut first = vec![0x43];
    first.extend(&chunk);
    assert_eq!(rx.handle_segment(t, &first), Ok(None));
    let mut cont = vec![0x83];
    cont.extend(&chunk);
    let mut result = Ok(None);
    for _ in 0..(MAX_MESSAGE_LEN / 513 + 1) {
        result = rx.handle_segment(t, &cont);
        if result.is_err() {
            break;
        }
    }
    assert_eq!(
        result,
        Err(BearerError::MessageTooLong {
            max: MAX_MESSAGE_LEN
        })
    );
}

#[test]
fn sar_timeout_after_20_s() {
    let segs = ProxySar::new(23).segment(PROV, &pdu(65));
    let mut rx = ProxySar::new(23);
    assert_eq!(rx.poll_timeout(), None);
    assert_eq!(rx.handle_timeout(Instant::ZERO), None, "spurious: no-op");
    let t0 = Instant::from_millis(1000);
    rx.handle_segment(t0, &segs[0]).unwrap();
    // Each segment restarts the timer.
    let t1 = t0 + Duration::from_secs(15);
    rx.handle_segment(t1, &segs[1]).unwrap();
    assert_eq!(rx.poll_timeout(), Some(t1 + Duration::from_secs(20)));
    assert_eq!(rx.handle_timeout(t0 + Duration::from_secs(20)), None);
    assert_eq!(rx.handle_timeout(t1 + Duration::from_millis(19_999)), None);
    assert_eq!(
        rx.handle_timeout(t1 + Duration::from_secs(20)),
        Some(BearerError::SarTimeout)
    );
    assert_eq!(
        rx.handle_timeout(t1 + Duration::from_secs(21)),
        None,
        "reported once"
    );
    assert_eq!(rx.poll_timeout(), None);
    // After the timeout the rest of the old message is a sequence error.
    assert_eq!(
        rx.handle_segment(t1, &segs[2]),
        Err(BearerError::SarNotStarted {
            sar: Sar::Continuation
        })
    );
}

#[test]
fn pb_gatt_link_carries_provisioning_pdus_only() {
    let mut a = PbGattLink::new(23);
    let mut b = PbGattLink::new(23);
    let t = Instant::ZERO;
    let key = pdu(65);
    a.send(&key);
    a.send(&[0x08]);
    let mut got = Vec::new();
    while let Some(value) = a.poll_transmit() {
        if let Some(p) = b.handle_data(t, &value).unwrap() {
            got.push(p);
        }
    }
    assert_eq!(got, vec![key, vec![0x08]]);
    assert_eq!(b.poll_timeout(), None);
    assert_eq!(b.handle_timeout(t + SAR_TIMEOUT), None);

    for ty in [0x00u8, 0x01, 0x02, 0x04, 0x3F] {
        assert_eq!(
            b.handle_data(t, &[ty, 1, 2, 3]),
            Err(BearerError::WrongMessageType(ProxyMessageType(ty)))
        );
        assert_eq!(
            b.handle_data(t, &[0x40 | ty, 1, 2, 3]),
            Err(BearerError::WrongMessageType(ProxyMessageType(ty)))
        );
    }
    assert_eq!(b.handle_data(t, &[]), Err(BearerError::EmptyProxyPdu));
    assert!(BearerError::WrongMessageType(ProxyMessageType::NETWORK_PDU).requires_disconnect());

    // A first segment starts the SAR timer.
    b.handle_data(t, &[0x43, 1]).unwrap();
    assert_eq!(b.poll_timeout(), Some(t + SAR_TIMEOUT));
    assert_eq!(
        b.handle_timeout(t + SAR_TIMEOUT),
        Some(BearerError::SarTimeout)
    );

    // A larger MTU after the exchange: fewer segments.
    a.set_att_mtu(69);
    a.send(&pdu(65));
    assert_eq!(std::iter::from_fn(|| a.poll_transmit()).count(), 1);
}

proptest! {
    /// Any sequence of writes: no panic; whatever completes is within the cap.
    #[test]
    fn sar_never_panics(writes in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..30), 0..40)) {
        let mut rx = ProxySar::new(23);
        let mut link = PbGattLink::new(23);
        for (i, w) in writes.iter().enumerate() {
            let t = Instant::from_millis(i as u64 * 3000);
            let _ = rx.handle_timeout(t);
            if let Ok(Some((_, m))) = rx.handle_segment(t, w) {
                prop_assert!(m.len() <= MAX_MESSAGE_LEN);
            }
            let _ = link.handle_timeout(t);
            let _ = link.handle_data(t, w);
        }
    }

    /// Segment then reassemble is the identity for any MTU and message.
    #[test]
    fn sar_round_trip(mtu in 0u16..600, ty in 0u8..0x40, message in proptest::collection::vec(any::<u8>(), 0..300)) {
        let tx = ProxySar::new(mtu);
        let mut rx = ProxySar::new(mtu);
        let segments = tx.segment(ProxyMessageType(ty), &message);
        let mut out = None;
        for s in &segments {
            prop_assert!(s.len() <= usize::from(mtu.max(23)) - 3);
            out = rx.handle_segment(Instant::ZERO, s).unwrap();
        }
        prop_assert_eq!(out, Some((ProxyMessageType(ty), message)));
    }
}
