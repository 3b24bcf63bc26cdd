use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use harambee_params::Digest;

use crate::StoreError;

/// Content-addressed, durable blob storage.
pub trait BlobStore: Send + Sync {
    /// Stores `bytes` and returns their digest; returns only once they are durable. Storing
    /// the same bytes twice is harmless.
    fn put(&self, bytes: &[u8]) -> Result<Digest, StoreError>;

    /// The bytes stored under `digest`, checked against it.
    fn get(&self, digest: &Digest) -> Result<Vec<u8>, StoreError>;

    /// Whether a blob is stored under `digest`.
    fn contains(&self, digest: &Digest) -> Result<bool, StoreError>;

    /// Deletes a blob (retention); deleting a missing blob is not an error.
    fn remove(&self, digest: &Digest) -> Result<(), StoreError>;
}

/// Blobs as files under a directory, `ab/cdef…` by digest (256 sub-directories keep
/// directories small).
#[derive(Debug)]
pub struct FsBlobStore {
    root: PathBuf,
    /// Distinguishes concurrent temporary files of this process.
    counter: AtomicU64,
}

impl FsBlobStore {
    /// Opens (creating if needed) a store rooted at `root`.
    pub fn open(root: &Path) -> Result<Self, StoreError> {
        fs::create_dir_all(root).map_err(|error| io(root, error))?;
        Ok(Self {
            root: root.to_path_buf(),
            counter: AtomicU64::new(0),
        })
    }

    /// Where a blob lives.
    pub fn path_of(&self, digest: &Digest) -> PathBuf {
        let hex = digest.to_hex();
        self.root.join(&hex[..2]).join(&hex[2..])
    }
}

fn io(path: &Path, error: std::io::Error) -> StoreError {
    StoreError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// Flushes a directory entry: after a rename, the new name is durable only once its
/// directory is synced.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(dir, e))
}

impl BlobStore for FsBlobStore {
    fn put(&self, bytes: &[u8]) -> Result<Digest, StoreError> {
        let digest = Digest::of_bytes(bytes);
        let path = self.path_of(&digest);
        if path.is_file() {
            return Ok(digest);
        }
        let dir = path.parent().unwrap_or(&self.root);
        if !dir.is_dir() {
            fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
            // A new directory's own entry must be durable too, or a blob renamed into it can
            // vanish with it after a power loss.
            sync_dir(&self.root)?;
        }
        // Write aside, sync, then rename: a crash leaves either no blob or the whole blob.
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".tmp-{}-{n}", std::process::id()));
        let mut file = File::create(&tmp).map_err(|e| io(&tmp, e))?;
        file.write_all(bytes)
            .and_then(|()| file.sync_all())
            .map_err(|e| io(&tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| io(&path, e))?;
        sync_dir(dir)?;
        Ok(digest)
    }

    fn get(&self, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        let path = self.path_of(digest);
        let bytes = fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => StoreError::Missing(*digest),
            _ => io(&path, e),
        })?;
        let actual = Digest::of_bytes(&bytes);
        if actual != *digest {
            return Err(StoreError::Corrupt {
                expected: *digest,
                actual,
            });
        }
        Ok(bytes)
    }

    fn contains(&self, digest: &Digest) -> Result<bool, StoreError> {
        Ok(self.path_of(digest).is_file())
    }

    fn remove(&self, digest: &Digest) -> Result<(), StoreError> {
        let path = self.path_of(digest);
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(path.parent().unwrap_or(&self.root)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&path, e)),
        }
    }
}
