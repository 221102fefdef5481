//! Signed models (feature `signature`): an ed25519 signature over the whole `.kiln` file,
//! appended as an 80-byte trailer, so a device loads only models made by a key it trusts.
//!
//! ```text
//! [ .kiln file (file_len bytes) ][ "KSIG" | u16 version=1 | u16 0 | key id (8) | signature (64) ]
//! ```
//! The signature covers the model bytes followed by the first 16 trailer bytes (magic, version,
//! reserved, key id), so no byte of a signed file can change unnoticed. The key id is the first
//! 8 bytes of the signer's public key: a hint for key rotation.

use crate::error::{Error, Result};
use crate::model::Model;

/// Trailer magic.
pub const SIG_MAGIC: [u8; 4] = *b"KSIG";
/// Trailer length in bytes.
pub const TRAILER_LEN: usize = 80;

/// Splits a signed file into the model bytes and the trailer, checking the trailer's layout.
fn split(bytes: &[u8]) -> Result<(&[u8], &[u8])> {
    if bytes.len() < TRAILER_LEN {
        return Err(Error::Truncated {
            needed: TRAILER_LEN,
            got: bytes.len(),
        });
    }
    let (model, trailer) = bytes.split_at(bytes.len() - TRAILER_LEN);
    if trailer[0..4] != SIG_MAGIC || u16::from_le_bytes([trailer[4], trailer[5]]) != 1 {
        return Err(Error::BadSignature);
    }
    Ok((model, trailer))
}

/// The key id (first 8 bytes of the signer's public key) recorded in a signed file.
pub fn key_id(bytes: &[u8]) -> Result<[u8; 8]> {
    let (_, trailer) = split(bytes)?;
    let mut id = [0u8; 8];
    id.copy_from_slice(&trailer[8..16]);
    Ok(id)
}

/// Verifies the signature of `bytes` (a signed `.kiln` file) against `public_key`, then loads
/// the model. Any change to the model or the trailer is `Error::BadSignature`.
pub fn from_signed_bytes<'m>(bytes: &'m [u8], public_key: &[u8; 32]) -> Result<Model<'m>> {
    let (model, trailer) = split(bytes)?;
    let pk = ed25519_compact::PublicKey::new(*public_key);
    let sig = ed25519_compact::Signature::from_slice(&trailer[16..80])
        .map_err(|_| Error::BadSignature)?;
    let mut state = pk
        .verify_incremental(&sig)
        .map_err(|_| Error::BadSignature)?;
    state.absorb(model);
    state.absorb(&trailer[..16]);
    state.verify().map_err(|_| Error::BadSignature)?;
    Model::from_bytes(model)
}

/// Signs a `.kiln` file with a 64-byte ed25519 secret key (seed followed by public key) and
/// returns the signed file (feature `alloc`).
#[cfg(feature = "alloc")]
pub fn sign(model: &[u8], secret_key: &[u8; 64]) -> Result<alloc::vec::Vec<u8>> {
    let sk = ed25519_compact::SecretKey::new(*secret_key);
    let mut out = alloc::vec::Vec::with_capacity(model.len() + TRAILER_LEN);
    out.extend_from_slice(model);
    out.extend_from_slice(&SIG_MAGIC);
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&secret_key[32..40]);
    let sig = sk.sign(&out, None); // model + trailer header
    out.extend_from_slice(sig.as_ref());
    Ok(out)
}

/// A key pair from a 32-byte seed: `(secret key (64 bytes), public key (32 bytes))`.
pub fn keypair_from_seed(seed: &[u8; 32]) -> ([u8; 64], [u8; 32]) {
    let kp = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(*seed));
    (*kp.sk, *kp.pk)
}
