//! Property tests: the parser and decoder never panic on hostile input,
//! escaping round-trips, and MLLP framing survives any chunking.

use proptest::prelude::*;

use fdp_hl7::{
    encode_frame, escape, reject_unparseable, unescape, Ack, AckCode, AckError, Delimiters,
    ErrorCode, Message, MllpDecoder, MllpError, END_BLOCK, START_BLOCK,
};

const VALID: &[&str] = &[
    "MSH|^~\\&|PAS|RXX|FDP|RYY|20240501120000||ADT^A01^ADT_A01|MSG0001|P|2.5\rEVN|A01|20240501120000\rPID|1||1234567^^^RXX^MR~9434765919^^^NHS^NH||SMITH^JOHN||19700101|M\rPV1|1|I|WARD1^BAY2^BED3^RXX&1.2.3&ISO\r",
    "MSH#$*@!#PAS#RXX#FDP#RYY#20240501##ADT$A01#42#P#2.4\rPID#1##111$$$RXX$MR*222$$$NHS$NH##Smith@T@Jones$Ann\rPV1#1#I#W1$B2$3\r",
    "MSH|^~\\&#|A|B|C|D|1||ORU^R01|7|T|2.7||||||UNICODE UTF-8\nOBX|1|TX|X^Y||Zoë \\X0D\\ \\.br\\ \\F\\ 50\\P\\\nNTE|1||\\H\\bold\\N\\\n",
    "\u{feff}\r\nMSH|^~\\&|A|B|C|D|1||ADT^A08|8|P|2.3\r\nPID|1||\"\"|||\r\n\r\nZX1\r\n",
];

/// Walks everything a consumer might touch, so panics anywhere in the view
/// and escape code are found, and checks that replies to any accepted
/// message parse back.
fn exercise(msg: &Message<'_>) {
    for seg in msg.segments() {
        let _ = seg.id();
        for field in seg.fields() {
            let _ = field.unescaped();
            for rep in field.repetitions() {
                let _ = rep.unescaped();
                for comp in rep.components() {
                    let _ = comp.unescaped();
                    for sub in comp.subcomponents() {
                        let _ = sub.unescaped();
                    }
                }
            }
        }
    }
    let _ = msg.message_type();
    for path in ["PID-3[2].1", "PV1-3.2", "MSH-2", "MSH-1.1", "OBX[2]-5.1.1"] {
        let _ = msg.get(path);
        let _ = msg.get_unescaped(path);
    }
    let ack = Ack::new(msg, AckCode::ApplicationError, "20240101", "ACK1")
        .text("text | with ^ delimiters")
        .error(AckError::new(ErrorCode::DataTypeError, "bad \\ value ~"))
        .build();
    let reply = Message::parse(&ack).expect("ACK must parse");
    assert_eq!(reply.get("MSA-2"), Some(msg.control_id()));
    assert_eq!(
        reply.get_unescaped("MSA-3").unwrap(),
        "text | with ^ delimiters"
    );
}

fn check_bytes(bytes: &[u8]) {
    match Message::parse_bytes(bytes) {
        Ok(msg) => exercise(&msg),
        Err(err) => {
            let _ = err.to_string();
            let nack = reject_unparseable(bytes, &err, "20240101", "NACK1");
            let reply = Message::parse(&nack).expect("reject must parse");
            assert_eq!(reply.get("MSA-1"), Some("AR"));
        }
    }
    let text = String::from_utf8_lossy(bytes);
    if let Ok(msg) = Message::parse(&text) {
        exercise(&msg);
    }
}

/// Text made mostly of characters that matter to the parser.
fn hl7ish() -> impl Strategy<Value = String> {
    let atoms = prop::sample::select(vec![
        "|",
        "^",
        "~",
        "\\",
        "&",
        "#",
        "\r",
        "\n",
        "\r\n",
        "MSH",
        "PID",
        "EVN",
        "ZX1",
        "MSH|^~\\&|",
        "\\F\\",
        "\\X",
        "\\.br\\",
        "\\Xe9\\",
        "A01",
        "ADT^A01",
        "1",
        "",
        " ",
        "\t",
        "\u{feff}",
        "é",
        "\x00",
        "\x0b",
        "\x1c",
        "8859/1",
        "||||||||",
    ]);
    prop::collection::vec(atoms, 0..80).prop_map(|v| v.concat())
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Set(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..=255).prop_map(|(i, x)| Mutation::Flip(i, x)),
        (
            any::<usize>(),
            prop::sample::select(b"|^~\\&#\r\n\x00\x0b\x1c\xff\xc3 A".to_vec())
        )
            .prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
        (any::<usize>(), 1usize..16).prop_map(|(i, n)| Mutation::Delete(i, n)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let len = bytes.len();
    let at = |i: usize| if len == 0 { 0 } else { i % (len + 1) };
    match m {
        Mutation::Flip(i, x) if len > 0 => bytes[i % len] ^= x,
        Mutation::Set(i, b) if len > 0 => bytes[i % len] = *b,
        Mutation::Insert(i, v) => {
            let p = at(*i);
            bytes.splice(p..p, v.iter().copied());
        }
        Mutation::Delete(i, n) if len > 0 => {
            let p = i % len;
            bytes.drain(p..(p + n).min(len));
        }
        Mutation::Truncate(i) => bytes.truncate(at(*i)),
        _ => {}
    }
}

/// Distinct ASCII punctuation characters for a random delimiter set.
fn delimiters() -> impl Strategy<Value = Delimiters> {
    let punct: Vec<char> = (0x21u8..0x7f)
        .map(char::from)
        .filter(|c| c.is_ascii_punctuation())
        .collect();
    (Just(punct).prop_shuffle(), any::<bool>()).prop_map(|(p, trunc)| {
        Delimiters::new(p[0], p[1], p[2], p[3], p[4], trunc.then_some(p[5])).unwrap()
    })
}

/// MLLP payloads: anything but the two framing bytes.
fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        any::<u8>().prop_filter("framing byte", |b| *b != START_BLOCK && *b != END_BLOCK),
        0..300,
    )
}

fn feed_in_chunks(
    dec: &mut MllpDecoder,
    stream: &[u8],
    sizes: &[usize],
) -> Vec<Result<Vec<u8>, MllpError>> {
    let mut out = Vec::new();
    let mut pos = 0;
    let mut k = 0;
    while pos < stream.len() {
        let n = sizes[k % sizes.len()].min(stream.len() - pos);
        dec.push(&stream[pos..pos + n]);
        pos += n;
        k += 1;
        while let Some(item) = dec.next_frame() {
            out.push(item.map(|f| f.into_payload()));
        }
    }
    dec.finish();
    out.extend(dec.frames().map(|r| r.map(|f| f.into_payload())));
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10_000))]

    #[test]
    fn parse_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        check_bytes(&bytes);
    }

    #[test]
    fn parse_never_panics_on_msh_prefixed_bytes(tail in prop::collection::vec(any::<u8>(), 0..600)) {
        let mut bytes = b"MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.4".to_vec();
        bytes.extend_from_slice(&tail);
        check_bytes(&bytes);
    }

    #[test]
    fn parse_never_panics_on_hl7ish_text(text in hl7ish()) {
        check_bytes(text.as_bytes());
        let prefixed = format!("MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.4\r{text}");
        check_bytes(prefixed.as_bytes());
    }

    #[test]
    fn parse_never_panics_on_mutated_messages(
        which in 0..VALID.len(),
        mutations in prop::collection::vec(mutation(), 1..6),
    ) {
        let mut bytes = VALID[which].as_bytes().to_vec();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        check_bytes(&bytes);
    }

    #[test]
    fn mllp_never_panics_on_arbitrary_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..2000),
        sizes in prop::collection::vec(1usize..100, 1..10),
        max in 0usize..64,
    ) {
        let mut dec = MllpDecoder::with_max_frame_bytes(max);
        for payload in feed_in_chunks(&mut dec, &bytes, &sizes).into_iter().flatten() {
            prop_assert!(payload.len() <= max);
            prop_assert!(!payload.contains(&START_BLOCK) && !payload.contains(&END_BLOCK));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn valid_messages_parse(which in 0..VALID.len()) {
        let msg = Message::parse_bytes(VALID[which].as_bytes()).unwrap();
        exercise(&msg);
    }

    #[test]
    fn escape_round_trips(text in any::<String>(), d in delimiters()) {
        let escaped = escape(&text, &d);
        // Nothing in the escaped text can split a value or end a segment.
        for c in escaped.chars() {
            prop_assert!(c != d.field() && c != d.component() && c != d.repetition()
                && c != d.subcomponent() && Some(c) != d.truncation());
            prop_assert!(!(c.is_ascii_control() && c != '\t'));
        }
        let back = unescape(&escaped, &d);
        prop_assert_eq!(back.as_ref(), text.as_str());
    }

    #[test]
    fn escaped_values_survive_a_message(value in any::<String>(), d in delimiters()) {
        let head = format!(
            "MSH{}{}{}A{}B{}C{}D{}1{}{}ADT{}A01{}1{}P{}2.5\rNTE{}1{}{}{}",
            d.field(), d.encoding_characters(), d.field(), d.field(), d.field(), d.field(),
            d.field(), d.field(), d.field(), d.component(), d.field(), d.field(), d.field(),
            d.field(), d.field(), d.field(), escape(&value, &d)
        );
        let msg = Message::parse(&head).unwrap();
        prop_assert_eq!(msg.get_unescaped("NTE-3.1.1").unwrap(), value);
    }

    #[test]
    fn unescape_never_panics(text in any::<String>(), d in delimiters()) {
        let _ = unescape(&text, &d);
        let _ = escape(&text, &d);
    }

    #[test]
    fn mllp_yields_exactly_the_frames(
        frames in prop::collection::vec(payload(), 0..12),
        sizes in prop::collection::vec(1usize..64, 1..10),
    ) {
        let mut stream = Vec::new();
        for f in &frames {
            stream.extend(encode_frame(f));
        }
        let mut dec = MllpDecoder::new();
        let got = feed_in_chunks(&mut dec, &stream, &sizes);
        let want: Vec<Result<Vec<u8>, MllpError>> = frames.into_iter().map(Ok).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn mllp_recovers_after_garbage(
        garbage in prop::collection::vec(
            any::<u8>().prop_filter("no framing", |b| *b != START_BLOCK), 1..50),
        frames in prop::collection::vec(payload(), 1..5),
        sizes in prop::collection::vec(1usize..64, 1..10),
    ) {
        let mut stream = garbage.clone();
        for f in &frames {
            stream.extend(encode_frame(f));
        }
        let mut dec = MllpDecoder::new();
        let got: Vec<Vec<u8>> = feed_in_chunks(&mut dec, &stream, &sizes)
            .into_iter()
            .filter_map(Result::ok)
            .collect();
        prop_assert_eq!(got, frames);
    }

    #[test]
    fn index_matches_naive_split(
        d in delimiters(),
        eol in prop::sample::select(vec!["\r", "\n", "\r\n", "\r\n\r\n"]),
        segments in prop::collection::vec(
            (
                prop::sample::select(vec!["PID", "EVN", "OBX", "ZX1", "NTE", "MSH"]),
                prop::collection::vec(prop::collection::vec(0usize..8, 0..12), 0..40),
            ),
            0..20,
        ),
    ) {
        let atoms = |k: usize| -> String {
            match k {
                0 => "a".into(),
                1 => "Bc".into(),
                2 => "123".into(),
                3 => " ".into(),
                4 => "é".into(),
                5 => d.component().into(),
                6 => d.repetition().into(),
                _ => d.subcomponent().into(),
            }
        };
        let f = d.field();
        let mut text = format!("MSH{f}{}{f}A{f}B{f}C{f}D{f}1{f}{f}ADT{}A01{f}9{f}P{f}2.5{eol}",
            d.encoding_characters(), d.component());
        let mut expected: Vec<(String, Vec<String>)> = Vec::new();
        for (id, fields) in &segments {
            let values: Vec<String> = fields
                .iter()
                .map(|atoms_of_field| atoms_of_field.iter().map(|&k| atoms(k)).collect())
                .collect();
            text.push_str(id);
            for v in &values {
                text.push(f);
                text.push_str(v);
            }
            text.push_str(eol);
            expected.push((id.to_string(), values));
        }
        let msg = Message::parse(&text).unwrap();
        prop_assert_eq!(msg.segment_count(), segments.len() + 1);
        for (seg, (id, values)) in msg.segments().skip(1).zip(&expected) {
            prop_assert_eq!(seg.id(), id.as_str());
            // MSH numbering shifts by one: field 2 is the first after the id.
            let shift = usize::from(id == "MSH");
            let count = if values.is_empty() { 0 } else { values.len() + shift };
            prop_assert_eq!(seg.field_count(), count);
            prop_assert_eq!(seg.fields().count(), count);
            for (k, v) in values.iter().enumerate() {
                prop_assert_eq!(seg.field(k + 1 + shift).unwrap().as_str(), v.as_str());
            }
            prop_assert!(seg.field(values.len() + 1 + shift).is_none());
        }
    }

    #[test]
    fn paths_never_panic(path in "[A-Za-z0-9\\-\\.\\[\\]\\(\\)]{0,20}") {
        let msg = Message::parse(VALID[0]).unwrap();
        let _ = msg.get(&path);
        let _ = msg.get_unescaped(&path);
    }
}
