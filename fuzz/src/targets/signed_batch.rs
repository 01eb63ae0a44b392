//! Signed batches, edge → ingest: a body reads as a batch or gets a reason; a
//! batch serialises to the same bytes after a round trip; every event of it
//! gets the ingest's verdict without a panic; the signature verifies the body
//! it was made for and refuses it changed by one byte, under another key or
//! another timestamp; hostile header text is refused with a reason.

use shared::batch::{Batch, BatchAuthError, sign, verify};

use super::digest;
use crate::corpus::fuzz_target;

fuzz_target!("batch", property);

const KEY: &[u8] = b"edge-signing-key-for-the-fuzzer";
const NOW: i64 = 1_764_410_400;

fn property(body: &[u8]) {
    reads_as_a_batch_or_says_why(body);
    signature_covers_every_byte(body);
    hostile_headers_are_refused(body);
}

fn reads_as_a_batch_or_says_why(body: &[u8]) {
    let batch: Batch = match serde_json::from_slice(body) {
        Ok(batch) => batch,
        Err(e) => return assert!(!e.to_string().is_empty()),
    };
    let text = serde_json::to_vec(&batch).expect("a batch serialises");
    let back: Batch = serde_json::from_slice(&text).expect("a serialised batch reads back");
    assert_eq!(back, batch, "batch round trip");
    assert_eq!(serde_json::to_vec(&back).expect("serialises"), text, "serialisation is stable");
    for event in &batch.events {
        if let Err(e) = event.validate() {
            assert!(!e.reason.is_empty(), "a refusal without a reason");
        }
    }
}

fn signature_covers_every_byte(body: &[u8]) {
    let signature = sign(KEY, NOW, body);
    assert_eq!(verify(KEY, &NOW.to_string(), &signature, body, NOW), Ok(NOW));
    for changed in one_byte_changes(body) {
        assert_eq!(verify(KEY, &NOW.to_string(), &signature, &changed, NOW), Err(BatchAuthError::Mismatch), "a changed body verified");
    }
    assert_eq!(verify(b"another-key", &NOW.to_string(), &signature, body, NOW), Err(BatchAuthError::Mismatch));
    assert_eq!(verify(KEY, &(NOW - 1).to_string(), &signature, body, NOW), Err(BatchAuthError::Mismatch));
}

/// The body with one byte changed (where the digest says), one byte more and
/// one byte less.
pub fn one_byte_changes(body: &[u8]) -> Vec<Vec<u8>> {
    let d = digest(body);
    let mut changes = vec![[body, &[d[2]]].concat()];
    if !body.is_empty() {
        let at = usize::from(u16::from_le_bytes([d[0], d[1]])) % body.len();
        let mut flipped = body.to_vec();
        flipped[at] ^= d[3] | 1;
        changes.push(flipped);
        changes.push(body[..body.len() - 1].to_vec());
    }
    changes
}

/// The input as the timestamp and as the signature header: a timestamp is
/// taken only when it is this batch's, and no made-up signature verifies.
fn hostile_headers_are_refused(input: &[u8]) {
    let text = String::from_utf8_lossy(input);
    let body = b"{\"events\":[]}";
    let signature = sign(KEY, NOW, body);
    let taken = verify(KEY, &text, &signature, body, NOW);
    assert_eq!(taken.is_ok(), text.trim().parse::<i64>() == Ok(NOW), "timestamp `{text}`: {taken:?}");
    match verify(KEY, &NOW.to_string(), &text, body, NOW) {
        Ok(_) => assert_eq!(hex_of(&text), Some(signature), "a made-up signature verified"),
        Err(e) => assert!(!e.to_string().is_empty()),
    }
}

fn hex_of(text: &str) -> Option<String> {
    hex::decode(text.trim()).ok().map(hex::encode)
}
