//! Crash-safe file writes. A checkpoint or result written in place can be left half-written by
//! a kill, a power cut or a full disk, and then neither the old nor the new version loads. So
//! every file a run depends on is written the way databases do it: to a temporary file beside
//! the target, flushed and fsync'ed, renamed over the target (atomic on POSIX file systems), and
//! the directory fsync'ed so the rename itself survives a crash. A failure at any point leaves
//! the previous version of the file in place.

use crate::{Error, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The temporary name used while writing `path`: `<name>.tmp` in the same directory (the same
/// file system, so the rename is atomic).
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Writes `bytes` to `path` atomically (module docs). On error the temporary file is removed
/// and `path` is untouched.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_path(path);
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    commit(&tmp, path)
}

/// Moves a fully written and synced `tmp` over `path` and syncs the directory.
pub fn commit(tmp: &Path, path: &Path) -> Result<()> {
    std::fs::rename(tmp, path).map_err(|e| Error::io(path, e))?;
    sync_dir_of(path)
}

/// fsync of the directory holding `path` (makes a rename or a new file durable). Directories
/// cannot be opened for syncing on every platform; there it is a no-op.
pub fn sync_dir_of(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    match std::fs::File::open(dir) {
        Ok(d) => d.sync_all().or(Ok(())),
        Err(_) => Ok(()),
    }
}

/// fsync of one file already written (e.g. by a library that writes files itself).
pub fn sync_file(path: &Path) -> Result<()> {
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    f.sync_all().map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_file_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("ilrec-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert!(!temp_path(&path).exists());
        // A write that cannot happen (the directory is gone) leaves an error, not a panic.
        let missing = dir.join("no/such/dir/b.json");
        let err = write_atomic(&missing, b"x").unwrap_err().to_string();
        assert!(err.contains("b.json"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
