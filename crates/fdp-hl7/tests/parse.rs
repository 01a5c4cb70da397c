//! Parsing behaviour through the public API.

use std::borrow::Cow;

use fdp_hl7::{Message, ParseError, ParseLimits};

const ADT: &str = "MSH|^~\\&|PAS|RXX|FDP|RYY|20240501120000+0100||ADT^A01^ADT_A01|MSG0001|P^T|2.5^GBR|||AL|NE|GBR|UNICODE UTF-8\r\
EVN|A01|20240501120000\r\
PID|1||1234567^^^RXX^MR~9434765919^^^NHS^NH||O'BRIEN^MARY^ANN^^MRS||19700101|F|||1 HIGH ST^^LEEDS^^LS1 1AA^GBR^H\r\
PV1|1|I|WARD1^BAY2^BED3^RXX&1.2.3&ISO||||C123^JONES^ALAN^^^DR\r";

fn parse(text: &str) -> Message<'_> {
    Message::parse(text).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn header_helpers() {
    let msg = parse(ADT);
    let ty = msg.message_type();
    assert_eq!(ty.code, "ADT");
    assert_eq!(ty.trigger, "A01");
    assert_eq!(ty.structure, "ADT_A01");
    assert_eq!(msg.control_id(), "MSG0001");
    assert_eq!(msg.sending_application(), "PAS");
    assert_eq!(msg.sending_facility(), "RXX");
    assert_eq!(msg.receiving_application(), "FDP");
    assert_eq!(msg.receiving_facility(), "RYY");
    assert_eq!(msg.timestamp(), "20240501120000+0100");
    assert_eq!(msg.processing_id(), "P");
    assert_eq!(msg.version(), "2.5");
    assert_eq!(msg.declared_charset(), "UNICODE UTF-8");
    assert_eq!(msg.segment_count(), 4);
}

#[test]
fn msh_numbering() {
    let msg = parse(ADT);
    let msh = msg.msh();
    assert_eq!(msh.field(1).unwrap().as_str(), "|");
    assert_eq!(msh.field(2).unwrap().as_str(), "^~\\&");
    // MSH-1 and MSH-2 are literal: never split or unescaped.
    assert_eq!(msh.field(2).unwrap().repetition_count(), 1);
    assert_eq!(msh.field(2).unwrap().unescaped(), "^~\\&");
    assert_eq!(
        msh.field(2).unwrap().component(1).unwrap().as_str(),
        "^~\\&"
    );
    assert_eq!(msh.field(3).unwrap().as_str(), "PAS");
    assert_eq!(msh.field(9).unwrap().as_str(), "ADT^A01^ADT_A01");
    assert_eq!(msh.field(10).unwrap().as_str(), "MSG0001");
    assert_eq!(msh.field(18).unwrap().as_str(), "UNICODE UTF-8");
    assert_eq!(msh.field_count(), 18);
    assert!(msh.field(19).is_none());
    assert!(msh.field(0).is_none());
    assert_eq!(msg.get("MSH-11.2"), Some("T"));
    assert_eq!(msg.get("MSH-12.2"), Some("GBR"));
    assert_eq!(msh.fields().count(), 18);
    assert_eq!(msh.fields().nth(8).unwrap().as_str(), "ADT^A01^ADT_A01");
}

#[test]
fn paths() {
    let msg = parse(ADT);
    assert_eq!(
        msg.get("PID-3"),
        Some("1234567^^^RXX^MR~9434765919^^^NHS^NH")
    );
    assert_eq!(msg.get("PID-3[1]"), Some("1234567^^^RXX^MR"));
    assert_eq!(msg.get("PID-3[2]"), Some("9434765919^^^NHS^NH"));
    assert_eq!(msg.get("PID-3.1"), Some("1234567"));
    assert_eq!(msg.get("PID-3[2].1"), Some("9434765919"));
    assert_eq!(msg.get("PID-3(2).5"), Some("NH"));
    assert_eq!(msg.get("PID-3[2].6"), None);
    assert_eq!(msg.get("PID-3[3]"), None);
    assert_eq!(msg.get("PID-3[2].2"), Some(""));
    assert_eq!(msg.get("PID-2"), Some(""));
    assert_eq!(msg.get("PID-2.1"), Some(""));
    assert_eq!(msg.get("PID-2.2"), None);
    assert_eq!(msg.get("PID-99"), None);
    assert_eq!(msg.get("PV1-3.2"), Some("BAY2"));
    assert_eq!(msg.get("PV1-3.4"), Some("RXX&1.2.3&ISO"));
    assert_eq!(msg.get("PV1-3.4.1"), Some("RXX"));
    assert_eq!(msg.get("PV1-3.4.2"), Some("1.2.3"));
    assert_eq!(msg.get("PV1-3.4.4"), None);
    assert_eq!(msg.get("pv1.3.2"), Some("BAY2"));
    assert_eq!(msg.get("ZZZ-1"), None);
    assert_eq!(msg.get("PV1[2]-1"), None);
    assert_eq!(msg.get("not a path"), None);
    assert_eq!(msg.get_unescaped("PID-5.1").unwrap(), "O'BRIEN");
    assert_eq!(msg.get_unescaped("PID-3[2].1").unwrap(), "9434765919");
    assert_eq!(msg.get_unescaped("PV1-3.4.2").unwrap(), "1.2.3");
    assert!(msg.get_unescaped("PV1-3.4.9").is_none());
}

#[test]
fn field_views() {
    let msg = parse(ADT);
    let pid = msg.segment("PID").unwrap();
    assert_eq!(pid.index(), 3);
    assert_eq!(pid.id(), "PID");
    assert_eq!(pid.field_count(), 11);
    let f3 = pid.field(3).unwrap();
    assert_eq!(f3.repetition_count(), 2);
    let r2 = f3.repetition(2).unwrap();
    assert_eq!(r2.component_count(), 5);
    assert_eq!(r2.component(4).unwrap(), "NHS");
    assert!(f3.repetition(0).is_none());
    assert!(r2.component(0).is_none());
    let pv1 = msg.segment("PV1").unwrap();
    let loc = pv1.field(3).unwrap().component(4).unwrap();
    assert_eq!(loc.subcomponent_count(), 3);
    let subs: Vec<_> = loc.subcomponents().map(|s| s.to_string()).collect();
    assert_eq!(subs, ["RXX", "1.2.3", "ISO"]);
    assert!(loc.subcomponent(0).is_none());
    assert!(pid.field(2).unwrap().is_empty());
    assert_eq!(format!("{}", pid.field(8).unwrap()), "F");
    assert!(format!("{pid:?}").contains("PID|1"));
    assert_eq!(pid.to_string(), pid.as_str());
}

#[test]
fn explicit_null() {
    let msg = parse("MSH|^~\\&|A|B|C|D|1||ADT^A08|1|P|2.4\rPID|1||1||\"\"\r");
    assert!(msg.segment("PID").unwrap().field(5).unwrap().is_null());
    assert!(!msg.segment("PID").unwrap().field(3).unwrap().is_null());
}

#[test]
fn unescaping_fields() {
    let text = "MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.4\rNTE|1||Smith \\T\\ Sons\\F\\Ltd \\S\\x\\R\\y \\E\\ \\X41\\\\.br\\end\\\r";
    let msg = parse(text);
    let f = msg.segment("NTE").unwrap().field(3).unwrap();
    assert_eq!(f.unescaped(), "Smith & Sons|Ltd ^x~y \\ A\nend\\");
    let plain = msg.segment("NTE").unwrap().field(1).unwrap();
    assert!(matches!(plain.unescaped(), Cow::Borrowed("1")));
}

#[test]
fn non_default_delimiters() {
    let text = "MSH#$*@!#PAS#RXX#FDP#RYY#20240501##ADT$A01#42#P#2.4\rPID#1##111$$$RXX$MR*222$$$NHS$NH##Smith@T@Jones$Ann\rPV1#1#I#W1$B2$3\r";
    let msg = parse(text);
    let d = msg.delimiters();
    assert_eq!(
        (
            d.field(),
            d.component(),
            d.repetition(),
            d.escape(),
            d.subcomponent()
        ),
        ('#', '$', '*', '@', '!')
    );
    assert_eq!(msg.get("MSH-1"), Some("#"));
    assert_eq!(msg.get("MSH-2"), Some("$*@!"));
    assert_eq!(msg.message_type().trigger, "A01");
    assert_eq!(msg.control_id(), "42");
    assert_eq!(msg.get("PID-3[2].1"), Some("222"));
    assert_eq!(msg.get("PID-3[2].4"), Some("NHS"));
    assert_eq!(msg.get("PV1-3.2"), Some("B2"));
    assert_eq!(msg.get_unescaped("PID-5.1").unwrap(), "Smith!Jones");
    // `|`, `^` and `\` are ordinary text with these delimiters.
    let msg = parse("MSH#$*@!#A|B#C#D#E#1##ADT$A01#7#P#2.4\rNTE#1##a|b^c\\d\r");
    assert_eq!(msg.get("MSH-3"), Some("A|B"));
    assert_eq!(msg.get_unescaped("NTE-3").unwrap(), "a|b^c\\d");
}

#[test]
fn truncation_character() {
    let msg = parse("MSH|^~\\&#|A|B|C|D|1||ADT^A01|1|P|2.7\rNTE|1||50\\P\\ off#\r");
    assert_eq!(msg.delimiters().truncation(), Some('#'));
    assert_eq!(msg.get("MSH-2"), Some("^~\\&#"));
    assert_eq!(msg.get_unescaped("NTE-3").unwrap(), "50# off#");
}

#[test]
fn line_endings() {
    let lf = ADT.replace('\r', "\n");
    let crlf = ADT.replace('\r', "\r\n");
    let blank = ADT.replace('\r', "\r\n\r\n");
    let no_final = ADT.trim_end_matches('\r').to_owned();
    let mixed = "MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.4\nEVN|A01\r\nPID|1\rPV1|1\n\n\n";
    for text in [
        lf.as_str(),
        crlf.as_str(),
        blank.as_str(),
        no_final.as_str(),
    ] {
        let msg = parse(text);
        assert_eq!(msg.segment_count(), 4, "{text:?}");
        assert_eq!(msg.get("PID-3[2].1"), Some("9434765919"));
        assert_eq!(msg.get("PV1-7.2"), Some("JONES"));
        assert_eq!(msg.msh().field(18).unwrap().as_str(), "UNICODE UTF-8");
    }
    let msg = parse(mixed);
    let ids: Vec<_> = msg.segments().map(|s| s.id()).collect();
    assert_eq!(ids, ["MSH", "EVN", "PID", "PV1"]);
    assert_eq!(msg.segment_at(3).unwrap().id(), "PID");
    assert!(msg.segment_at(0).is_none());
    assert!(msg.segment_at(5).is_none());
}

#[test]
fn leading_bom_and_whitespace() {
    let text = format!("\u{feff}\r\n  \n{ADT}");
    let msg = parse(&text);
    assert_eq!(msg.control_id(), "MSG0001");
    let bytes = format!("\u{feff}{ADT}").into_bytes();
    assert_eq!(
        Message::parse_bytes(&bytes).unwrap().control_id(),
        "MSG0001"
    );
}

#[test]
fn whitespace_only_lines_are_ignored() {
    let msg = parse("MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.4\r   \rPID|1\r\t\r");
    assert_eq!(msg.segment_count(), 2);
}

#[test]
fn segment_without_fields() {
    let msg = parse("MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.4\rZX1\rPID|1\r");
    let z = msg.segment("ZX1").unwrap();
    assert_eq!(z.field_count(), 0);
    assert!(z.field(1).is_none());
    assert_eq!(msg.get("ZX1-1"), None);
}

#[test]
fn missing_msh() {
    for text in [
        "",
        "   ",
        "PID|1||x\r",
        "EVN|A01\rMSH|^~\\&|A\r",
        "msh|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.4",
    ] {
        match Message::parse(text) {
            Err(ParseError::MissingMsh { found }) => {
                assert!(found.len() <= 80, "{found}");
            }
            other => panic!("{text:?}: {other:?}"),
        }
    }
    let e = Message::parse_bytes(b"\r\n  PID|1\r").unwrap_err();
    assert_eq!(
        e,
        ParseError::MissingMsh {
            found: "PID|1".into()
        }
    );
    let e = Message::parse("EVN|A01\r").unwrap_err();
    assert_eq!(
        e.to_string(),
        "message does not start with an MSH segment; it starts with \"EVN|A01\""
    );
}

#[test]
fn truncated_msh() {
    let cases: &[(&str, usize)] = &[
        ("MSH", 1),
        ("MSH\r", 1),
        ("MSH|", 2),
        ("MSH|\rPID|1", 2),
        ("MSH|^~\\&", 9),
        ("MSH|^~\\&|A|B|C|D|1|", 9),
        ("MSH|^~\\&|A|B|C|D|1||", 9),
        ("MSH|^~\\&|A|B|C|D|1||^A01|1|P|2.4", 9),
        ("MSH|^~\\&|A|B|C|D|1||ADT^A01", 10),
        ("MSH|^~\\&|A|B|C|D|1||ADT^A01||P|2.4", 10),
        ("MSH|^~\\&|A|B|C|D|1||ADT^A01|1", 11),
        ("MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P\rPID|1", 12),
    ];
    for &(text, field) in cases {
        match Message::parse(text) {
            Err(ParseError::MshFieldMissing { field: f, .. }) => assert_eq!(f, field, "{text:?}"),
            other => panic!("{text:?}: {other:?}"),
        }
    }
    let e = Message::parse("MSH|^~\\&|A|B|C|D|1||ADT^A01|1").unwrap_err();
    assert_eq!(
        e.to_string(),
        "MSH-11 (processing ID) is missing or empty; MSH has 10 fields"
    );
    // Present but empty MSH-11 and MSH-12 are tolerated.
    assert!(Message::parse("MSH|^~\\&|A|B|C|D|1||ADT^A01|1||").is_ok());
}

#[test]
fn bad_delimiters() {
    for (text, want_field) in [
        ("MSH1^~\\&|", true),
        ("MSH ^~\\&|", true),
        ("MSHé^~\\&|", true),
        ("MSH\t^~\\&|", true),
        ("MSH|^~|A", false),
        ("MSH|^~\\&#!|A", false),
        ("MSH|^^\\&|A", false),
        ("MSH|^~\\||A", false),
        ("MSH|^~\\a|A", false),
    ] {
        match Message::parse(text) {
            Err(ParseError::BadFieldSeparator { .. }) if want_field => {}
            Err(ParseError::BadEncodingCharacters { .. }) if !want_field => {}
            other => panic!("{text:?}: {other:?}"),
        }
    }
}

#[test]
fn bad_segment_ids() {
    let head = "MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.4\r";
    for (body, index) in [
        ("pid|1", 2),
        ("PI|1", 2),
        ("PIDX|1", 2),
        ("P-D|1", 2),
        (" PID|1", 2),
        ("EVN|1\rPI", 3),
        ("EVN|1\rPIDD", 3),
        ("EVN|1\rPI\x01D|1", 3),
        ("EVN|1\rPID\x01|1", 3),
        ("EVN|1\rPÏD|1", 3),
    ] {
        let text = format!("{head}{body}");
        match Message::parse(&text) {
            Err(ParseError::BadSegment {
                index: i,
                text_prefix,
            }) => {
                assert_eq!(i, index, "{body:?}");
                assert!(text_prefix.chars().count() <= 20);
            }
            other => panic!("{body:?}: {other:?}"),
        }
    }
    let e = Message::parse(&format!("{head}EVN|1\rP1D|1\rpv1|1|I")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "segment 4 does not start with a segment id of 3 uppercase letters or digits followed \
         by the field separator: \"pv1|1|I\""
    );
}

#[test]
fn control_characters() {
    let head = "MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.4\r";
    let text = format!("{head}PID|1||12\x0034");
    match Message::parse(&text).unwrap_err() {
        ParseError::ControlCharacter {
            segment_index,
            segment_id,
            field,
            byte,
            offset,
        } => {
            assert_eq!(
                (segment_index, segment_id.as_str(), field, byte),
                (2, "PID", 3, 0)
            );
            assert_eq!(offset, head.len() + 9);
        }
        other => panic!("{other:?}"),
    }
    let e = Message::parse(&format!("{head}PV1|1|I\x1c")).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "segment 2 (PV1) field 2 contains control character 0x1C at byte offset {}",
            head.len() + 7
        )
    );
    // In MSH the field number follows HL7 numbering.
    let e = Message::parse("MSH|^~\\&|A\x7f|B|C|D|1||ADT^A01|1|P|2.4").unwrap_err();
    assert!(
        matches!(
            e,
            ParseError::ControlCharacter {
                field: 3,
                byte: 0x7f,
                ..
            }
        ),
        "{e:?}"
    );
    // TAB is allowed.
    assert!(Message::parse(&format!("{head}NTE|1||a\tb")).is_ok());
}

#[test]
fn limits() {
    let head = "MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.4\r";
    let long = "x".repeat(70_000);
    let text = format!("{head}EVN|A01\rPID|1||1||{long}|F\r");
    let e = Message::parse(&text).unwrap_err();
    assert_eq!(
        e.to_string(),
        "segment 3 (PID) field 5 is 70000 bytes long; the limit is 65536"
    );
    // Also the last field of a segment, and of the message.
    let text = format!("{head}PID|1||1||{long}");
    assert!(matches!(
        Message::parse(&text),
        Err(ParseError::FieldTooLong {
            field: 5,
            segment_index: 2,
            len: 70_000,
            ..
        })
    ));
    let text = format!("{head}EVN|A01\rNTE|{long}\rPID|1");
    assert!(matches!(
        Message::parse(&text),
        Err(ParseError::FieldTooLong {
            field: 1,
            segment_index: 3,
            ..
        })
    ));
    // MSH fields are numbered as HL7 does.
    let text = format!("MSH|^~\\&|{long}|B|C|D|1||ADT^A01|1|P|2.4");
    assert!(matches!(
        Message::parse(&text),
        Err(ParseError::FieldTooLong {
            field: 3,
            segment_index: 1,
            ..
        })
    ));

    let limits = ParseLimits {
        max_segments: 3,
        ..ParseLimits::default()
    };
    let ok = format!("{head}EVN|A01\rPID|1\r\r\r");
    assert!(Message::parse_with_limits(&ok, &limits).is_ok());
    let too_many = format!("{head}EVN|A01\rPID|1\rPV1|1");
    assert_eq!(
        Message::parse_with_limits(&too_many, &limits).unwrap_err(),
        ParseError::TooManySegments { limit: 3 }
    );

    let limits = ParseLimits {
        max_message_bytes: 100,
        ..ParseLimits::default()
    };
    let big = format!("{head}NTE|{}", "y".repeat(100));
    assert!(matches!(
        Message::parse_with_limits(&big, &limits),
        Err(ParseError::MessageTooLarge { limit: 100, .. })
    ));
    assert!(matches!(
        Message::parse_bytes_with_limits(big.as_bytes(), &limits),
        Err(ParseError::MessageTooLarge { limit: 100, .. })
    ));
    assert_eq!(
        ParseLimits::default(),
        ParseLimits {
            max_message_bytes: 1 << 20,
            max_segments: 10_000,
            max_field_bytes: 1 << 16
        }
    );
}

#[test]
fn bytes_latin1() {
    let bytes = b"MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.4||||||8859/1\rPID|1||1||M\xdcLLER^J\xd6RG\r";
    let msg = Message::parse_bytes(bytes).unwrap();
    assert_eq!(msg.get("PID-5.1"), Some("MÜLLER"));
    assert_eq!(msg.get("PID-5.2"), Some("JÖRG"));
    assert!(matches!(msg.as_str().len(), n if n > bytes.len()));
    let owned: Message<'static> = msg.into_owned();
    assert_eq!(owned.get("PID-5.1"), Some("MÜLLER"));
}

#[test]
fn bytes_invalid_utf8() {
    let bytes = b"MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.4\rPID|1||1||M\xdcLLER\r";
    let offset = bytes.iter().position(|&b| b == 0xdc).unwrap();
    match Message::parse_bytes(bytes) {
        Err(ParseError::WrongEncoding {
            offset: o,
            declared,
        }) => {
            assert_eq!(o, offset);
            assert!(declared.is_empty());
        }
        other => panic!("{other:?}"),
    }
    let bytes = b"MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.4||||||UNICODE UTF-8\rPID|1||1||\xff\r";
    let e = Message::parse_bytes(bytes).unwrap_err();
    assert!(e.to_string().contains("UNICODE UTF-8"), "{e}");
    assert!(e.to_string().contains("8859/1"), "{e}");
}

#[test]
fn bytes_utf8_borrowed() {
    let text = "MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.4||||||UNICODE UTF-8\rPID|1||1||Zoë\r";
    let msg = Message::parse_bytes(text.as_bytes()).unwrap();
    assert_eq!(msg.get("PID-5"), Some("Zoë"));
    assert_eq!(msg.as_str(), text);
}

#[test]
fn errors_map_to_hl7_codes() {
    use fdp_hl7::ErrorCode;
    let e = Message::parse("MSH|^~\\&|A|B|C|D|1||ADT^A01").unwrap_err();
    assert_eq!(e.error_code(), ErrorCode::RequiredFieldMissing);
    let loc = e.location().unwrap();
    assert_eq!(
        (loc.segment_id.as_str(), loc.segment_index, loc.field),
        ("MSH", 1, Some(10))
    );
    let e = Message::parse("PID").unwrap_err();
    assert_eq!(e.error_code(), ErrorCode::SegmentSequenceError);
    assert!(e.location().is_none());
}

#[test]
fn second_msh_segment_uses_msh_numbering() {
    let msg = parse("MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.4\rMSH|^~\\&|X|Y\r");
    let second = msg.segments_named("MSH").nth(1).unwrap();
    assert_eq!(second.field(3).unwrap().as_str(), "X");
    assert_eq!(msg.get("MSH[2]-4"), Some("Y"));
    assert_eq!(msg.control_id(), "1");
}

#[test]
fn segments_named_odd_ids() {
    let msg = parse(ADT);
    assert_eq!(msg.segments_named("PI").count(), 0);
    assert_eq!(msg.segments_named("PIDX").count(), 0);
    assert_eq!(msg.segments_named("").count(), 0);
    assert!(msg.segment("ZZZ").is_none());
}
