//! ACK and reject building.

use fdp_hl7::{
    escape, reject_unparseable, unescape, Ack, AckCode, AckError, Delimiters, ErrorCode,
    ErrorLocation, Message, ParseError, Severity,
};

const ADT: &str = "MSH|^~\\&|PAS^1.2.3^ISO|RXX|FDP|RYY|20240501120000||ADT^A01^ADT_A01|MSG0001|P|2.5\rPID|1||123\r";

#[test]
fn accept_swaps_parties_and_echoes_header() {
    let msg = Message::parse(ADT).unwrap();
    let ack = Ack::new(&msg, AckCode::ApplicationAccept, "20240501120001", "A1").build();
    assert_eq!(
        ack,
        "MSH|^~\\&|FDP|RYY|PAS^1.2.3^ISO|RXX|20240501120001||ACK^A01^ACK|A1|P|2.5\rMSA|AA|MSG0001\r"
    );
    let reply = Message::parse(&ack).unwrap();
    assert_eq!(reply.receiving_application(), "PAS");
    assert_eq!(reply.get("MSH-5.2"), Some("1.2.3"));
    assert_eq!(reply.message_type().structure, "ACK");
    assert_eq!(reply.get("MSA-2"), Some("MSG0001"));
}

#[test]
fn text_is_escaped() {
    let msg = Message::parse(ADT).unwrap();
    let ack = Ack::new(&msg, AckCode::ApplicationAccept, "2024|05", "A^1")
        .text("stored | ok ^ \\ & ~\r\nnext")
        .build();
    let reply = Message::parse(&ack).unwrap();
    assert_eq!(reply.segment_count(), 2);
    assert_eq!(reply.timestamp(), "2024\\F\\05");
    assert_eq!(reply.control_id(), "A\\S\\1");
    assert_eq!(
        reply.get_unescaped("MSA-3").unwrap(),
        "stored | ok ^ \\ & ~\r\nnext"
    );
}

#[test]
fn error_ack_with_err_segments() {
    let msg = Message::parse(ADT).unwrap();
    let ack = Ack::new(&msg, AckCode::ApplicationError, "20240501120001", "A2")
        .text("rejected")
        .error(
            AckError::new(ErrorCode::RequiredFieldMissing, "No NHS number in PID-3").at(
                ErrorLocation::field("PID", 2, 3)
                    .with_repetition(2)
                    .with_component(1),
            ),
        )
        .error(
            AckError::new(ErrorCode::ApplicationInternalError, "store unavailable")
                .severity(Severity::Warning)
                .diagnostic("disk full"),
        )
        .build();
    let lines: Vec<&str> = ack.split('\r').collect();
    assert_eq!(lines[1], "MSA|AE|MSG0001|rejected");
    assert_eq!(
        lines[2],
        "ERR||PID^2^3^2^1|101^Required field missing^HL70357|E||||No NHS number in PID-3"
    );
    assert_eq!(
        lines[3],
        "ERR|||207^Application internal error^HL70357|W|||disk full|store unavailable"
    );
    assert_eq!(lines[4], "");
    let reply = Message::parse(&ack).unwrap();
    assert_eq!(reply.segments_named("ERR").count(), 2);
    assert_eq!(reply.get("ERR-3.1"), Some("101"));
    assert_eq!(reply.get("ERR-4"), Some("E"));
    assert_eq!(reply.get("ERR[2]-4"), Some("W"));
}

#[test]
fn reject_codes() {
    let msg = Message::parse(ADT).unwrap();
    for (code, text) in [
        (AckCode::ApplicationAccept, "AA"),
        (AckCode::ApplicationError, "AE"),
        (AckCode::ApplicationReject, "AR"),
        (AckCode::CommitAccept, "CA"),
        (AckCode::CommitError, "CE"),
        (AckCode::CommitReject, "CR"),
    ] {
        let ack = Ack::new(&msg, code, "1", "2")
            .error(AckError::new(ErrorCode::UnsupportedMessageType, "no"))
            .build();
        let reply = Message::parse(&ack).unwrap();
        assert_eq!(reply.get("MSA-1"), Some(text));
        assert_eq!(code.to_string(), text);
        assert_eq!(reply.get("ERR-3.1"), Some("200"));
    }
}

#[test]
fn ack_uses_incoming_delimiters_and_charset() {
    let text = "MSH#$*@!#PAS#RXX#FDP#RYY#20240501##ADT$A04#42#T#2.3#####GBR#8859/1\rPID#1\r";
    let msg = Message::parse(text).unwrap();
    let ack = Ack::new(&msg, AckCode::ApplicationReject, "20240501", "R#1")
        .error(
            AckError::new(ErrorCode::DataTypeError, "bad date #1")
                .at(ErrorLocation::field("PID", 2, 7)),
        )
        .build();
    assert!(
        ack.starts_with("MSH#$*@!#FDP#RYY#PAS#RXX#20240501##ACK$A04$ACK#R@F@1#T#2.3######8859/1\r"),
        "{ack}"
    );
    let reply = Message::parse(&ack).unwrap();
    assert_eq!(reply.get("MSA-1"), Some("AR"));
    assert_eq!(reply.get("MSA-2"), Some("42"));
    // v2.3 senders also get ERR-1.
    assert_eq!(reply.get("ERR-1.1"), Some("PID"));
    assert_eq!(reply.get("ERR-1.3"), Some("7"));
    assert_eq!(reply.get("ERR-1.4.1"), Some("102"));
    assert_eq!(reply.get("ERR-2"), Some("PID$2$7"));
    assert_eq!(reply.get_unescaped("ERR-8").unwrap(), "bad date #1");
    assert_eq!(reply.declared_charset(), "8859/1");
}

#[test]
fn ack_without_trigger() {
    let msg = Message::parse("MSH|^~\\&|A|B|C|D|1||QRY|9|P|2.4").unwrap();
    let ack = Ack::new(&msg, AckCode::ApplicationAccept, "1", "2").build();
    assert!(ack.contains("||ACK|2|P|2.4\r"), "{ack}");
}

#[test]
fn ack_from_parse_error_detail() {
    let bad = "MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.4\rPID|1||1\x01";
    let err = Message::parse(bad).unwrap_err();
    let detail = AckError::from_parse_error(&err);
    assert_eq!(detail.code, ErrorCode::DataTypeError);
    assert_eq!(detail.location, Some(ErrorLocation::field("PID", 2, 3)));
    assert_eq!(detail.user_message, err.to_string());
}

#[test]
fn reject_unparseable_salvages_control_id() {
    let bytes = b"MSH|^~\\&|PAS|RXX|FDP|RYY|20240501||ADT^A01|MSG\\F\\7|T|2.3\rPID|1||\xff\r";
    let err = Message::parse_bytes(bytes).unwrap_err();
    assert!(matches!(err, ParseError::WrongEncoding { .. }));
    let nack = reject_unparseable(bytes, &err, "20240501120001", "N1");
    let reply = Message::parse(&nack).unwrap();
    assert_eq!(reply.get("MSA-1"), Some("AR"));
    assert_eq!(reply.get_unescaped("MSA-2").unwrap(), "MSG|7");
    assert_eq!(reply.receiving_application(), "PAS");
    assert_eq!(reply.sending_application(), "FDP");
    assert_eq!(reply.processing_id(), "T");
    assert_eq!(reply.version(), "2.3");
    assert_eq!(reply.get("ERR-3.1"), Some("102"));
    assert_eq!(reply.get("ERR-2"), Some("MSH^1^18"));
    assert_eq!(reply.get_unescaped("ERR-8").unwrap(), err.to_string());
}

#[test]
fn reject_unparseable_from_custom_delimiters() {
    let bytes = b"MSH#$*@!#PAS$X#RXX#FDP#RYY#1##ADT$A01#M@S@1#P#2.5\rbad\r";
    let err = Message::parse_bytes(bytes).unwrap_err();
    let nack = reject_unparseable(bytes, &err, "1", "N2");
    let reply = Message::parse(&nack).unwrap();
    assert_eq!(reply.delimiters(), Delimiters::default());
    assert_eq!(reply.receiving_application(), "PAS");
    assert_eq!(reply.get_unescaped("MSA-2").unwrap(), "M$1");
    assert_eq!(reply.get("ERR-3.1"), Some("100"));
}

#[test]
fn reject_unparseable_garbage() {
    for bytes in [
        &b""[..],
        b"\x00\x01\x02",
        b"GET / HTTP/1.1\r\n",
        b"MSH",
        b"MSH|",
        b"MSHA^~\\&|",
        b"MSH|^~\\&|A|B",
    ] {
        let err = Message::parse_bytes(bytes).unwrap_err();
        let nack = reject_unparseable(bytes, &err, "20240501", "N3");
        let reply = Message::parse(&nack).unwrap_or_else(|e| panic!("{bytes:?}: {e}\n{nack}"));
        assert_eq!(reply.get("MSA-1"), Some("AR"));
        assert_eq!(reply.get("MSA-2"), Some(""));
        assert_eq!(reply.version(), "2.5");
        assert_eq!(reply.processing_id(), "P");
        assert_eq!(reply.control_id(), "N3");
    }
}

#[test]
fn reject_unparseable_limits_echo() {
    let mut bytes = b"MSH|^~\\&|A|B|C|D|1||ADT^A01|".to_vec();
    bytes.extend(std::iter::repeat_n(b'9', 100_000));
    bytes.extend_from_slice(b"|P|2.4\rPID|1||\x02");
    let err = Message::parse_bytes(&bytes).unwrap_err();
    let nack = reject_unparseable(&bytes, &err, "1", "2");
    let reply = Message::parse(&nack).unwrap();
    assert_eq!(reply.get("MSA-2").unwrap().len(), 199);
}

#[test]
fn escape_helpers_round_trip() {
    let d = Delimiters::default();
    let s = "a|b^c~d\\e&f\rg";
    assert_eq!(unescape(&escape(s, &d), &d), s);
}
