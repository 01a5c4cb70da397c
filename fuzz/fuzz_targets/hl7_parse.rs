//! Parses arbitrary bytes as an HL7 message, walks every value of whatever
//! parses, and builds the reply the listener would send either way.

#![no_main]

use fdp_hl7::{reject_unparseable, Ack, AckCode, AckError, ErrorCode, Message};
use libfuzzer_sys::fuzz_target;

fn walk(msg: &Message<'_>) {
    for seg in msg.segments() {
        for field in seg.fields() {
            let _ = field.unescaped();
            for rep in field.repetitions() {
                for comp in rep.components() {
                    let _ = comp.unescaped();
                    for sub in comp.subcomponents() {
                        let _ = sub.unescaped();
                    }
                }
            }
        }
    }
    for path in ["PID-3[2].1", "PV1-3.2", "MSH-2", "OBX[2]-5.1.1"] {
        let _ = msg.get_unescaped(path);
    }
    let ack = Ack::new(msg, AckCode::ApplicationError, "20240101000000", "FUZZ")
        .text("fuzz | reply")
        .error(AckError::new(ErrorCode::DataTypeError, "x^y"))
        .build();
    let reply = Message::parse(&ack).expect("an ACK to a parsed message must parse");
    assert_eq!(reply.get("MSA-2"), Some(msg.control_id()));
}

fuzz_target!(|data: &[u8]| {
    match Message::parse_bytes(data) {
        Ok(msg) => walk(&msg),
        Err(err) => {
            let nack = reject_unparseable(data, &err, "20240101000000", "FUZZ");
            Message::parse(&nack).expect("a reject must parse");
        }
    }
    let text = String::from_utf8_lossy(data);
    if let Ok(msg) = Message::parse(&text) {
        walk(&msg);
    }
});
