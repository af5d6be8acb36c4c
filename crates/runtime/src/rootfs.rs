//! Root filesystems from archives: `weft run --rootfs debian.tar` takes what `docker export` or
//! `podman export` wrote (or any tar of a tree, gzipped or not), unpacks it once into the
//! data-root and runs from there. An entry that would land outside the tree refuses the archive.

use std::fs::File;
use std::hash::{Hash, Hasher};
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::sync::atomic::{AtomicU64, Ordering};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("rootfs {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("rootfs {path} is not a tar archive (what docker export or podman export writes): {reason}")]
    NotArchive { path: String, reason: String },
    #[error("rootfs {path}: entry {entry:?} would be written outside the root filesystem: refused")]
    Escapes { path: String, entry: String },
}

/// The directory archive `archive` unpacks to under `cache`, unpacking it first unless an
/// earlier run did (the key is the archive's path, device, inode, size and modification time:
/// an archive replaced or rewritten is unpacked again). Blocking. While it unpacks, `progress`
/// hears (bytes of the archive read, its size).
pub fn unpacked(archive: &Path, cache: &Path, progress: &dyn Fn(u64, u64)) -> Result<PathBuf, RootfsError> {
    let name = archive.display().to_string();
    let io = |source| RootfsError::Io { path: name.clone(), source };
    let meta = std::fs::metadata(archive).map_err(io)?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (archive, meta.dev(), meta.ino(), meta.size(), meta.mtime(), meta.mtime_nsec()).hash(&mut h);
    let dir = cache.join(format!("{:016x}", h.finish()));
    if dir.is_dir() {
        return Ok(dir);
    }
    std::fs::create_dir_all(cache).map_err(io)?;
    // Unpacked beside, then renamed into place: a run that dies halfway leaves no half tree, and
    // two runs unpacking at once both end with one whole tree.
    static UNPACKS: AtomicU64 = AtomicU64::new(0);
    let partial = cache.join(format!(".partial-{}-{}", std::process::id(), UNPACKS.fetch_add(1, Ordering::Relaxed)));
    progress(0, meta.size());
    let result = unpack(archive, &partial, &|read| progress(read, meta.size()));
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&partial);
        return Err(e);
    }
    if std::fs::rename(&partial, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&partial);
        if !dir.is_dir() {
            return Err(io(std::io::Error::other("could not move the unpacked tree into place")));
        }
    }
    Ok(dir)
}

/// A reader that reports how many bytes have gone through it, at each MiB.
struct Counted<'a, R> {
    inner: R,
    read: u64,
    progress: &'a dyn Fn(u64),
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let before = self.read;
        self.read += n as u64;
        if before >> 20 != self.read >> 20 {
            (self.progress)(self.read);
        }
        Ok(n)
    }
}

fn unpack(archive: &Path, dst: &Path, progress: &dyn Fn(u64)) -> Result<(), RootfsError> {
    let name = archive.display().to_string();
    let io = |source| RootfsError::Io { path: name.clone(), source };
    let not_archive = |reason: String| RootfsError::NotArchive { path: name.clone(), reason };
    let mut f = File::open(archive).map_err(io)?;
    let mut magic = [0u8; 2];
    // (Fewer than two bytes: not gzip, and tar says what it is.)
    let _ = f.read(&mut magic).map_err(io)?;
    f.seek(SeekFrom::Start(0)).map_err(io)?;
    let file = BufReader::new(Counted { inner: f, read: 0, progress });
    let reader: Box<dyn Read + '_> = if magic == [0x1f, 0x8b] { Box::new(flate2::read::GzDecoder::new(file)) } else { Box::new(file) };
    std::fs::create_dir(dst).map_err(io)?;
    let mut tar = tar::Archive::new(reader);
    tar.set_preserve_permissions(true);
    tar.set_preserve_ownerships(true);
    tar.set_preserve_mtime(true);
    tar.set_unpack_xattrs(false);
    let mut count = 0usize;
    for entry in tar.entries().map_err(|e| not_archive(e.to_string()))? {
        let mut entry = entry.map_err(|e| not_archive(e.to_string()))?;
        let path = entry.path().map(|p| p.display().to_string()).unwrap_or_default();
        // false: the entry would land outside `dst` (a `..` in its path, or through a link).
        if !entry.unpack_in(dst).map_err(|e| not_archive(format!("{path}: {e}")))? {
            return Err(RootfsError::Escapes { path: name.clone(), entry: path });
        }
        count += 1;
    }
    if count == 0 {
        return Err(not_archive("no entries".into()));
    }
    Ok(())
}
