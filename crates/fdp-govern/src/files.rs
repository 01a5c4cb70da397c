//! Small files the instance keeps beside its tables (the project registry,
//! installed products, federation state), replaced whole so that a crash
//! leaves either the old contents or the new, never a mix.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

/// Write `bytes` to `path` durably and all at once: to a temporary file
/// beside it, synced, renamed over it, and the directory synced so that the
/// rename survives a crash. The directory is made if need be.
pub fn replace_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    replace(path, bytes, false)
}

/// [`replace_durably`], the file readable by its owner alone (the access
/// tokens' hashes).
pub fn replace_secret_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    replace(path, bytes, true)
}

fn replace(path: &Path, bytes: &[u8], secret: bool) -> std::io::Result<()> {
    let dir = path.parent().expect("a file in a directory");
    let mut name = path.file_name().expect("a file name").to_os_string();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    write_identity_file(&tmp, bytes, secret, true)?;
    fs::rename(&tmp, path)?;
    File::open(dir)?.sync_all()
}

/// Write a key, certificate or other small file of an identity, synced,
/// making its directory if need be. A `secret` one (a private key) is
/// created readable by its owner alone. `replace` says whether a file
/// already there is overwritten or the write refused (`AlreadyExists`).
pub fn write_identity_file(
    path: &Path,
    contents: &[u8],
    secret: bool,
    replace: bool,
) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let mut opts = fs::OpenOptions::new();
    opts.write(true);
    if replace {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut f = opts.open(path)?;
    f.write_all(contents)?;
    f.sync_all()
}

/// Why the private key at `path` must not be used, if others than its
/// owner may read it: the message tells the user what to do.
pub fn key_readable_by_others(path: &Path) -> std::io::Result<Option<String>> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(path)?.permissions().mode();
        if mode & 0o077 != 0 {
            return Ok(Some(format!(
                "the private key is readable by others (mode {:o}); run chmod 600 on it",
                mode & 0o777
            )));
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_replaced_whole_and_no_temporary_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/state.json");
        replace_durably(&path, b"one").unwrap();
        replace_durably(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_private_key_is_written_for_its_owner_alone_and_a_readable_one_is_named() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("m/member.key");
        write_identity_file(&key, b"k", true, false).unwrap();
        assert_eq!(
            fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(key_readable_by_others(&key).unwrap(), None);
        let again = write_identity_file(&key, b"other", true, false).unwrap_err();
        assert_eq!(again.kind(), std::io::ErrorKind::AlreadyExists);
        write_identity_file(&key, b"replaced", true, true).unwrap();
        assert_eq!(fs::read(&key).unwrap(), b"replaced");
        fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
        let why = key_readable_by_others(&key).unwrap().unwrap();
        assert!(
            why.contains("mode 644") && why.contains("chmod 600"),
            "{why}"
        );
    }
}
