use std::time::Duration;

use super::{Backoff, partial_success, retry_delay};

#[test]
fn a_partial_success_is_read_from_the_response_and_garbage_is_ignored() {
    // partial_success { rejected_spans: 3, error_message: "too big" }, then an unknown field.
    let response = [
        0x0a, 0x0b, 0x08, 0x03, 0x12, 0x07, b't', b'o', b'o', b' ', b'b', b'i', b'g', 0x18, 0x01,
    ];
    assert_eq!(partial_success(&response), Some((3, "too big")));
    assert_eq!(partial_success(&[]), None);
    assert_eq!(partial_success(&[0x0a, 0x00]), Some((0, "")));
    for garbage in [&[0x0a, 0x7f][..], &[0xff; 12][..], &[0x0a][..], b"<html>"] {
        let _ = partial_success(garbage);
    }
}

#[test]
fn the_retry_info_delay_is_read_from_a_grpc_status_and_other_details_are_skipped() {
    let url = b"type.googleapis.com/google.rpc.RetryInfo";
    // RetryInfo { retry_delay: Duration { seconds: 2, nanos: 500_000_000 } }
    let info = [0x0a, 0x08, 0x08, 0x02, 0x10, 0x80, 0xca, 0xb5, 0xee, 0x01];
    let mut any = vec![0x0a, url.len() as u8];
    any.extend_from_slice(url);
    any.push(0x12);
    any.push(info.len() as u8);
    any.extend_from_slice(&info);
    let other = b"\x0a\x05other\x12\x00";
    // Status { code: 8, message: "x", details: [other, any] }
    let mut status = vec![0x08, 0x08, 0x12, 0x01, b'x', 0x1a, other.len() as u8];
    status.extend_from_slice(other);
    status.push(0x1a);
    status.push(any.len() as u8);
    status.extend_from_slice(&any);
    assert_eq!(retry_delay(&status), Some(Duration::from_millis(2500)));
    assert_eq!(retry_delay(&status[..status.len() - 1]), None, "truncated");
    assert_eq!(retry_delay(&[0x08, 0x0e]), None, "no details");
    assert_eq!(retry_delay(&[]), None);
}

#[test]
fn backoff_doubles_to_its_cap_with_jitter_and_a_longer_server_delay_wins() {
    let mut backoff = Backoff::new();
    let pauses: Vec<Duration> = (0..7).map(|_| backoff.pause(None)).collect();
    for (pause, base) in pauses.iter().zip([100, 200, 400, 800, 1600, 1600, 1600]) {
        let base = Duration::from_millis(base);
        assert!(
            *pause >= base && *pause <= base + Duration::from_millis(100),
            "{pauses:?}"
        );
    }
    let mut backoff = Backoff::new();
    assert_eq!(
        backoff.pause(Some(Duration::from_secs(3))),
        Duration::from_secs(3)
    );
    assert_eq!(
        backoff.pause(Some(Duration::from_millis(1))),
        Duration::from_millis(200)
    );
    assert_eq!(
        Backoff::new().pause(Some(Duration::from_secs(86_400))),
        Duration::from_secs(600)
    );
}
