//! Fuzzes the control socket's request decoding: a request line as the daemon reads it.
//!
//! Runs the daemon's own parser (`control::protocol::parse_request`: the line as JSON, the
//! version checked first, then the `Envelope`), and `serde_json::from_slice::<Envelope>`
//! directly, which is what a client of the protocol would use.
//!
//! Invariants: nothing panics; a line that decodes re-encodes to a line that decodes equal;
//! an accepted request carries the protocol version.
#![no_main]

use libfuzzer_sys::fuzz_target;

use launchgraph::control::protocol::{
    Envelope, MAX_REQUEST_BYTES, PROTOCOL_VERSION, parse_request,
};

fuzz_target!(|data: &[u8]| {
    // The daemon refuses a longer line before parsing it.
    if data.len() > MAX_REQUEST_BYTES {
        return;
    }
    if let Ok(request) = parse_request(data) {
        // What the daemon accepts is what a client of this version would have sent.
        round_trip(&Envelope {
            version: PROTOCOL_VERSION,
            request,
        });
    }
    if let Ok(envelope) = serde_json::from_slice::<Envelope>(data) {
        round_trip(&envelope);
    }
});

fn round_trip(envelope: &Envelope) {
    let line = serde_json::to_vec(envelope).expect("an envelope encodes");
    assert!(!line.contains(&b'\n'), "one request, one line");
    let again: Envelope = serde_json::from_slice(&line).expect("an encoded envelope decodes");
    assert_eq!(&again, envelope);
}
