//! `kiln keygen`, `kiln sign`, `kiln check-signature`.

use super::common::{open_model, read_key, to_hex};
use anyhow::{anyhow, bail, Result};
use kiln_converter::fsutil;
use kiln_runtime::signature;
use std::path::{Path, PathBuf};

/// `name` with `.suffix` appended (so `dev.v2` gives `dev.v2.secret`, not `dev.secret`).
fn with_suffix(name: &Path, suffix: &str) -> PathBuf {
    let mut s = name.as_os_str().to_owned();
    s.push(".");
    s.push(suffix);
    PathBuf::from(s)
}

/// Writes a new key pair; refuses to replace either file.
pub fn keygen(name: &Path) -> Result<()> {
    let secret = with_suffix(name, "secret");
    let public = with_suffix(name, "pub");
    for p in [&secret, &public] {
        if std::fs::symlink_metadata(p).is_ok() {
            bail!(
                "{}: already exists; kiln never overwrites a key (remove it first, or pick another name)",
                p.display()
            );
        }
    }
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow!("no randomness for the key: {e}"))?;
    let (sk, pk) = signature::keypair_from_seed(&seed);
    fsutil::write_secret(&secret, to_hex(&sk).as_bytes())?;
    fsutil::write_atomic(&public, to_hex(&pk).as_bytes())?;
    outln!(
        "wrote {} (secret, mode 0600) and {} (public)",
        secret.display(),
        public.display()
    );
    Ok(())
}

/// Signs a model with a secret key whose public half must match its seed.
pub fn sign(model: &Path, key: &Path, output: Option<PathBuf>) -> Result<()> {
    let sk = read_key::<64>(key)?;
    let mut seed = [0u8; 32];
    seed.copy_from_slice(&sk[..32]);
    if signature::keypair_from_seed(&seed).1[..] != sk[32..] {
        bail!(
            "{}: the public half of this secret key does not match its seed; the key is damaged \
             (a signature made with it would verify nowhere)",
            key.display()
        );
    }
    let bytes = fsutil::read_file(model)?;
    if bytes.len() > signature::TRAILER_LEN
        && bytes[bytes.len() - signature::TRAILER_LEN..].starts_with(&signature::SIG_MAGIC)
    {
        bail!("{}: already signed", model.display());
    }
    let buf = kiln_runtime::writer::AlignedBuf::new(&bytes);
    open_model(&buf, model)?;
    let signed = signature::sign(&bytes, &sk)?;
    let out = output.unwrap_or_else(|| model.with_extension("signed.kiln"));
    fsutil::write_atomic(&out, &signed)?;
    outln!(
        "signed {} -> {} (key id {})",
        model.display(),
        out.display(),
        to_hex(&sk[32..40]).trim()
    );
    Ok(())
}

/// Verifies a signed model against a public key.
pub fn check(model: &Path, public: &Path) -> Result<()> {
    let pk = read_key::<32>(public)?;
    let bytes = fsutil::read_file(model)?;
    let buf = kiln_runtime::writer::AlignedBuf::new(&bytes);
    match signature::from_signed_bytes(buf.as_slice(), &pk) {
        Ok(m) => outln!("{}: signature OK ({} ops)", model.display(), m.num_ops()),
        Err(e) => bail!("{}: {e}", model.display()),
    }
    Ok(())
}
