//! The federation folder's side of changing the charter: one writer at a time, and a
//! `charter.toml` that is either the old file or the new one, never half of each.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use crate::CharterError;

/// An exclusive hold on a federation folder: a running coordinator keeps one for as long as
/// it serves, and `harambee charter amend` takes one for the length of an amendment, so the
/// charter never changes under a live coordinator and two amendments never interleave.
///
/// It is an advisory lock (`flock`) on `coordinator.lock` in the folder, held through an
/// open file: the operating system releases it when the holder exits, even when it is
/// killed, so a crash never leaves a stale lock behind (as a pid file would). The file also
/// records the holder's process id, for the message that refuses a second holder.
///
/// ```
/// use harambee_charter::FolderLock;
///
/// let folder = std::env::temp_dir().join(format!("folder-lock-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&folder).unwrap();
/// let held = FolderLock::acquire(&folder, "the coordinator").unwrap();
/// assert!(FolderLock::acquire(&folder, "`harambee charter amend`").is_err());
/// drop(held);
/// assert!(FolderLock::acquire(&folder, "`harambee charter amend`").is_ok());
/// # std::fs::remove_dir_all(&folder).unwrap();
/// ```
#[derive(Debug)]
pub struct FolderLock {
    // Held open for the lock's sake; closing it releases the lock.
    _file: File,
}

impl FolderLock {
    /// The lock file's name inside the federation folder.
    pub const FILE_NAME: &str = "coordinator.lock";

    /// Takes the folder's lock for `holder` (who is taking it, in words, for the message a
    /// second taker sees), or says who holds it. Never waits: a coordinator that is running
    /// must be stopped, not waited for.
    pub fn acquire(folder: &Path, holder: &str) -> Result<Self, CharterError> {
        let path = folder.join(Self::FILE_NAME);
        let io = |e: std::io::Error| CharterError::io(&path, e);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut held_by = String::new();
                let _ = file.read_to_string(&mut held_by);
                return Err(CharterError::FolderBusy {
                    path: path.display().to_string(),
                    held_by: held_by.trim().to_string(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        let record = format!("{holder}, process {}\n", std::process::id());
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(record.as_bytes()))
            .map_err(io)?;
        Ok(Self { _file: file })
    }
}

/// Replaces `path` with `contents` so that a crash at any moment leaves either the old file
/// or the new one: the bytes go to a temporary file in the same directory, which is flushed
/// to disk, renamed over `path`, and the directory is flushed so the rename itself lasts.
pub(crate) fn write_atomically(path: &Path, contents: &[u8]) -> Result<(), CharterError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut file = File::create(&temporary)?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&temporary, path)?;
        File::open(&dir)?.sync_all()
    })();
    written.map_err(|e| {
        let _ = fs::remove_file(&temporary);
        CharterError::io(path, e)
    })
}
