//! Files the CLI reads and writes.
//!
//! Writing never loses data: the bytes go to a fresh temporary file in the target's directory
//! (created exclusively under a random name by the `tempfile` crate, so a planted symlink cannot
//! redirect it), are synced, then renamed over the target. A failure at any step leaves the
//! previous file untouched. Only regular files are replaced: a device node, directory or FIFO
//! at the target is refused.
//!
//! Reading refuses anything but regular files (a symlink to `/dev/zero` would never end) and
//! files larger than a cap (1 GiB unless `kiln --max-file-size` raises it).

use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Default cap on the size of any file the CLI reads: 1 GiB.
pub const DEFAULT_MAX_READ: u64 = 1 << 30;

static MAX_READ: AtomicU64 = AtomicU64::new(DEFAULT_MAX_READ);

/// Sets the cap on the size of files read with [`read_file`] (the `--max-file-size` flag).
pub fn set_max_read(bytes: u64) {
    MAX_READ.store(bytes, Ordering::Relaxed);
}

/// The current cap on file sizes, in bytes.
pub fn max_read() -> u64 {
    MAX_READ.load(Ordering::Relaxed)
}

/// Opens `path` for reading, refusing non-regular files and files over the cap; returns the
/// file and its length.
pub fn open_regular(path: &Path) -> Result<(std::fs::File, u64)> {
    let f = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let meta = f
        .metadata()
        .with_context(|| format!("reading {}", path.display()))?;
    if !meta.is_file() {
        bail!(
            "{}: not a regular file (devices, FIFOs and directories are not read)",
            path.display()
        );
    }
    let cap = max_read();
    if meta.len() > cap {
        bail!(
            "{}: {} bytes is over the {cap}-byte limit for one file (raise it with `kiln --max-file-size BYTES`)",
            path.display(),
            meta.len()
        );
    }
    Ok((f, meta.len()))
}

/// Reads a whole regular file of at most [`max_read`] bytes.
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    let (f, len) = open_regular(path)?;
    let mut bytes = Vec::with_capacity(len as usize);
    // The length is re-checked while reading: a file that grows meanwhile stops at the cap.
    f.take(max_read().saturating_add(1))
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() as u64 > max_read() {
        bail!(
            "{}: grew past the {}-byte limit while being read",
            path.display(),
            max_read()
        );
    }
    Ok(bytes)
}

/// Reads a whole regular text file (UTF-8) of at most [`max_read`] bytes.
pub fn read_text(path: &Path) -> Result<String> {
    String::from_utf8(read_file(path)?)
        .map_err(|e| anyhow::anyhow!("{}: not UTF-8 text ({e})", path.display()))
}

/// Atomically replaces `path` with `bytes` (mode 0666 less the umask, as a new file gets).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_mode(path, bytes, 0o666, true, |f, b| f.write_all(b))
}

/// Atomically writes a secret (mode 0600), refusing to replace an existing file: the final
/// link is made without clobbering, so a file created meanwhile is not overwritten either.
pub fn write_secret(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_mode(path, bytes, 0o600, false, |f, b| f.write_all(b))
}

/// As [`write_atomic`], with the write itself supplied (tests inject failures here).
pub fn write_atomic_with(
    path: &Path,
    bytes: &[u8],
    write: impl FnOnce(&mut std::fs::File, &[u8]) -> std::io::Result<()>,
) -> Result<()> {
    write_atomic_mode(path, bytes, 0o666, true, write)
}

fn write_atomic_mode(
    path: &Path,
    bytes: &[u8],
    mode: u32,
    replace: bool,
    write: impl FnOnce(&mut std::fs::File, &[u8]) -> std::io::Result<()>,
) -> Result<()> {
    if let Ok(meta) = std::fs::metadata(path) {
        if !meta.is_file() {
            bail!(
                "{}: refusing to replace something that is not a regular file",
                path.display()
            );
        }
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(".kiln-").suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(mode));
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut tmp = builder
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    write(tmp.as_file_mut(), bytes).with_context(|| format!("writing {}", path.display()))?;
    tmp.as_file()
        .sync_all()
        .with_context(|| format!("syncing {}", path.display()))?;
    // Dropping `tmp` on any error above (or below) removes the temporary file.
    if replace {
        tmp.persist(path)
            .map_err(|e| e.error)
            .with_context(|| format!("renaming a temporary file to {}", path.display()))?;
    } else {
        tmp.persist_noclobber(path).map_err(|e| {
            if e.error.kind() == std::io::ErrorKind::AlreadyExists {
                anyhow::anyhow!(
                    "{}: already exists; a key is never overwritten (remove it first if you mean to)",
                    path.display()
                )
            } else {
                anyhow::Error::new(e.error)
                    .context(format!("linking a temporary file to {}", path.display()))
            }
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn replaces_and_fails_safely() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.bin");
        write_atomic(&p, b"old").unwrap();
        write_atomic(&p, b"new").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        // A target whose parent does not exist: the write fails and nothing else changes.
        let bad = dir.path().join("missing-dir").join("a.bin");
        assert!(write_atomic(&bad, b"x").is_err());
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert_eq!(names(dir.path()), ["a.bin"]);
    }

    #[test]
    fn a_write_cut_off_midway_leaves_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("model.kiln");
        write_atomic(&p, b"the old model, intact").unwrap();
        let new = vec![7u8; 4096];
        let err = write_atomic_with(&p, &new, |f, b| {
            f.write_all(&b[..b.len() / 2])?; // half the bytes reach the disk, then the device fails
            Err(std::io::Error::other("disk full"))
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("disk full"), "{err:#}");
        assert_eq!(std::fs::read(&p).unwrap(), b"the old model, intact");
        // No temporary file is left behind.
        assert_eq!(names(dir.path()), ["model.kiln"]);
    }

    #[cfg(unix)]
    #[test]
    fn a_planted_symlink_is_not_followed_and_devices_are_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        // Plant symlinks under every name the old scheme would have used.
        for name in [
            format!(".out.kiln.tmp-{}", std::process::id()),
            ".kiln-.tmp".into(),
        ] {
            std::os::unix::fs::symlink(&victim, dir.path().join(name)).unwrap();
        }
        write_atomic(&dir.path().join("out.kiln"), b"model").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert_eq!(
            std::fs::read(dir.path().join("out.kiln")).unwrap(),
            b"model"
        );
        // A device node (or a directory) at the target is refused, not replaced.
        let err = write_atomic(Path::new("/dev/null"), b"x").unwrap_err();
        assert!(format!("{err:#}").contains("not a regular file"), "{err:#}");
        let err = write_atomic(dir.path(), b"x").unwrap_err();
        assert!(format!("{err:#}").contains("not a regular file"), "{err:#}");
    }

    #[test]
    fn a_255_byte_name_can_be_written() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m".repeat(250) + ".kiln");
        write_atomic(&p, b"ok").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"ok");
    }

    #[cfg(unix)]
    #[test]
    fn secrets_are_private_and_never_overwritten() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.secret");
        write_secret(&p, b"s1").unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let err = write_secret(&p, b"s2").unwrap_err();
        assert!(format!("{err:#}").contains("already exists"), "{err:#}");
        assert_eq!(std::fs::read(&p).unwrap(), b"s1");
    }

    #[cfg(unix)]
    #[test]
    fn reads_refuse_devices_and_oversized_files() {
        let err = read_file(Path::new("/dev/zero")).unwrap_err();
        assert!(format!("{err:#}").contains("not a regular file"), "{err:#}");
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("zero.npy");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        let err = read_file(&link).unwrap_err();
        assert!(format!("{err:#}").contains("not a regular file"), "{err:#}");
        let big = dir.path().join("big.bin");
        std::fs::write(&big, vec![0u8; 100]).unwrap();
        assert_eq!(read_file(&big).unwrap().len(), 100);
    }
}
