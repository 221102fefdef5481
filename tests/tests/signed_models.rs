//! Signed models: a device given a trusted public key loads only models signed by its key; any
//! change to the model or the signature is rejected.

use kiln_runtime::signature::{from_signed_bytes, key_id, keypair_from_seed, sign, TRAILER_LEN};
use kiln_runtime::writer::AlignedBuf;
use kiln_runtime::Error;

fn model() -> Vec<u8> {
    tiny()
}

fn tiny() -> Vec<u8> {
    let w = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
    kiln_runtime::writer::write(&kiln_runtime::writer::example_dense(3, &w)).unwrap()
}

#[test]
fn signed_model_loads_with_its_key_only() {
    let (sk, pk) = keypair_from_seed(&[7u8; 32]);
    let (_, other_pk) = keypair_from_seed(&[8u8; 32]);
    let m = model();
    let signed = sign(&m, &sk).unwrap();
    assert_eq!(signed.len(), m.len() + TRAILER_LEN);
    let buf = AlignedBuf::new(&signed);
    let loaded = from_signed_bytes(buf.as_slice(), &pk).unwrap();
    assert_eq!(loaded.num_ops(), 1);
    assert_eq!(key_id(buf.as_slice()).unwrap(), pk[..8]);
    assert_eq!(
        from_signed_bytes(buf.as_slice(), &other_pk).err(),
        Some(Error::BadSignature)
    );
    // An unsigned file, or a signed file read as unsigned, is refused.
    assert!(from_signed_bytes(AlignedBuf::new(&m).as_slice(), &pk).is_err());
    assert!(kiln_runtime::Model::from_bytes(buf.as_slice()).is_err());
}

#[test]
fn every_single_bit_flip_is_rejected() {
    let (sk, pk) = keypair_from_seed(&[42u8; 32]);
    let signed = sign(&model(), &sk).unwrap();
    for byte in 0..signed.len() {
        for bit in [0, 3, 7] {
            let mut b = signed.clone();
            b[byte] ^= 1 << bit;
            let buf = AlignedBuf::new(&b);
            let r = from_signed_bytes(buf.as_slice(), &pk);
            assert_eq!(
                r.err(),
                Some(Error::BadSignature),
                "flipping bit {bit} of byte {byte}"
            );
        }
    }
}
