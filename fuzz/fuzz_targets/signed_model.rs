//! Signature verification on arbitrary bytes: rejected unless signed by the key.
#![no_main]
use kiln_runtime::writer::AlignedBuf;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (_, pk) = kiln_runtime::signature::keypair_from_seed(&[3u8; 32]);
    let buf = AlignedBuf::new(data);
    let _ = kiln_runtime::signature::from_signed_bytes(buf.as_slice(), &pk);
});
