//! Feeds arbitrary bytes to the MLLP decoder in fuzzer-chosen chunk sizes
//! and checks that every frame it yields is well formed.

#![no_main]

use fdp_hl7::{MllpDecoder, END_BLOCK, START_BLOCK};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&config, stream)) = data.split_first() else {
        return;
    };
    // Low bits pick the chunk size, high bits a small frame limit so the
    // oversize path is reached often.
    let chunk = usize::from(config & 0x0f) + 1;
    let max = usize::from(config >> 4) * 16;
    let mut dec = MllpDecoder::with_max_frame_bytes(max);
    let check = |dec: &mut MllpDecoder| {
        while let Some(item) = dec.next_frame() {
            if let Ok(frame) = item {
                assert!(frame.len() <= max);
                assert!(!frame.contains(&START_BLOCK));
                assert!(!frame.contains(&END_BLOCK));
            }
        }
    };
    for piece in stream.chunks(chunk) {
        dec.push(piece);
        check(&mut dec);
    }
    dec.finish();
    check(&mut dec);
    assert!(!dec.in_frame());
});
