//! Writes that never follow a symbolic link: the one place every write into a
//! study, a job's working directory or a privacy store goes through.
//!
//! A [`Tree`] is an open handle on a directory (its root path is configuration
//! and trusted). Everything beneath it is reached one path component at a
//! time with `openat(O_NOFOLLOW | O_DIRECTORY)` relative to the handle of the
//! directory above, so a symbolic link in *any* component — to a directory
//! outside, to a file, dangling, or a loop — is refused, not followed, and the
//! check is the use: there is no window between looking at a path and writing
//! to it. Files are written to a temporary name created with
//! `O_CREAT | O_EXCL | O_NOFOLLOW` in the handle of their directory and
//! renamed over the final name (`renameat` replaces a link, never follows it).
//!
//! A refused link is an [`io::Error`] carrying [`LinkRefused`], which
//! [`crate::ExecutorError::io`] turns into
//! [`crate::ExecutorError::LinkInPath`].
//!
//! The component walk is used on every kernel (rather than `openat2` with
//! `RESOLVE_NO_SYMLINKS`, Linux 5.6+ only): one code path, the same checks
//! everywhere, and the handles of directories met on the way are cached by
//! [`DirCache`] so 10,000 files in one directory cost one walk.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use sha2::{Digest, Sha256};
use warden_pipeline::escape::escape_path;

/// The payload of an [`io::Error`] raised when a path component is a
/// symbolic link (or something else that is not a directory) where a
/// directory was needed, or when the final name is a link that would be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkRefused {
    /// The component, relative to the tree's root (e.g. `output`).
    pub component: PathBuf,
    /// What it is: `a symbolic link`, `a file`, ….
    pub what: &'static str,
}

impl std::fmt::Display for LinkRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is {} where a directory was needed; warden never writes through links",
            escape_path(&self.component),
            self.what
        )
    }
}

impl std::error::Error for LinkRefused {}

/// The [`LinkRefused`] inside `error`, if that is what it is.
pub fn link_refused(error: &io::Error) -> Option<&LinkRefused> {
    error.get_ref()?.downcast_ref::<LinkRefused>()
}

fn refused(component: PathBuf, what: &'static str) -> io::Error {
    io::Error::other(LinkRefused { component, what })
}

fn describe(kind: FileType) -> &'static str {
    match kind {
        FileType::Symlink => "a symbolic link",
        FileType::RegularFile => "a file",
        FileType::Directory => "a directory",
        _ => "a special file",
    }
}

/// The normal components of `rel`; anything that could leave the tree
/// (`..`, an absolute path) is refused.
fn components(rel: &Path) -> io::Result<Vec<&OsStr>> {
    let mut out = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(name) => out.push(name),
            Component::CurDir => {}
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{} is not a relative path inside the tree",
                        escape_path(rel)
                    ),
                ));
            }
        }
    }
    Ok(out)
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// Open the directory `name` in `dir`, never following a link; when it is
/// not a directory, say what it is (`shown` names it in the error).
fn open_child_dir(dir: BorrowedFd<'_>, name: &OsStr, shown: &Path) -> io::Result<OwnedFd> {
    match rustix::fs::openat(dir, name, dir_flags(), Mode::empty()) {
        Ok(fd) => Ok(fd),
        Err(e) if e == Errno::LOOP || e == Errno::NOTDIR => {
            let what = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
                .map(|st| describe(FileType::from_raw_mode(st.st_mode)))
                .unwrap_or("not a directory");
            Err(refused(shown.to_path_buf(), what))
        }
        Err(e) => Err(e.into()),
    }
}

/// An open directory: writes beneath it never follow a symbolic link.
#[derive(Debug, Clone)]
pub struct Tree {
    fd: Arc<OwnedFd>,
    path: PathBuf,
}

impl Tree {
    /// Open the existing directory `path` (its own path is trusted: links in
    /// it are followed; nothing beneath it will be).
    pub fn open(path: &Path) -> io::Result<Tree> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Tree {
            fd: Arc::new(fd),
            path: path.to_path_buf(),
        })
    }

    /// Create `path` (and its parents) if needed, then open it.
    pub fn create(path: &Path) -> io::Result<Tree> {
        std::fs::create_dir_all(path)?;
        Tree::open(path)
    }

    /// Open `path` as a tree, reaching it beneath `base` (never following a
    /// link below `base`) when it lies inside `base`, else as [`Tree::create`].
    /// A store inside the study (a local run's `metadata/`) is thus as safe as
    /// the study.
    pub fn create_within(base: &Path, path: &Path) -> io::Result<Tree> {
        match path.strip_prefix(base) {
            Ok(rel) if !rel.as_os_str().is_empty() => {
                let base = Tree::create(base)?;
                base.subtree(rel, true)
            }
            _ => Tree::create(path),
        }
    }

    /// Open the existing directory `path` as a tree, reaching it beneath
    /// `base` (never following a link below `base`) when it lies inside
    /// `base`, else as [`Tree::open`]. Creates nothing.
    pub fn open_within(base: &Path, path: &Path) -> io::Result<Tree> {
        match path.strip_prefix(base) {
            Ok(rel) if !rel.as_os_str().is_empty() => Tree::open(base)?.subtree(rel, false),
            _ => Tree::open(path),
        }
    }

    /// The path the tree was opened at.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The handle.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The directory `rel` beneath this one as a tree of its own, created
    /// (with its parents) when `create`.
    pub fn subtree(&self, rel: &Path, create: bool) -> io::Result<Tree> {
        let parts = components(rel)?;
        let fd = self.walk_dirs(&parts, create)?;
        Ok(Tree {
            fd: Arc::new(fd),
            path: self.path.join(rel),
        })
    }

    /// Open the directories `parts` one by one, creating them when `create`.
    /// Returns a handle on the last (a duplicate of the root for none).
    fn walk_dirs(&self, parts: &[&OsStr], create: bool) -> io::Result<OwnedFd> {
        let mut current: Option<OwnedFd> = None;
        let mut shown = PathBuf::new();
        for name in parts {
            shown.push(name);
            let dir = current.as_ref().map_or(self.fd(), |fd| fd.as_fd());
            if create {
                match rustix::fs::mkdirat(dir, *name, Mode::from_raw_mode(0o777)) {
                    Ok(()) => {}
                    Err(e) if e == Errno::EXIST => {}
                    Err(e) => return Err(e.into()),
                }
            }
            current = Some(open_child_dir(dir, name, &shown)?);
        }
        match current {
            Some(fd) => Ok(fd),
            None => rustix::fs::openat(self.fd(), ".", dir_flags(), Mode::empty())
                .map_err(io::Error::from),
        }
    }

    /// Split `rel` into its directory components and its final name.
    fn split(rel: &Path) -> io::Result<(Vec<&OsStr>, &OsStr)> {
        let mut parts = components(rel)?;
        let name = parts.pop().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "an empty path names no file")
        })?;
        Ok((parts, name))
    }

    /// Open the regular file `rel` for reading: no component may be a link,
    /// nor the file itself, and a fifo is refused without blocking.
    pub fn open_file(&self, rel: &Path) -> io::Result<File> {
        let (dirs, name) = Self::split(rel)?;
        let dir = self.walk_dirs(&dirs, false)?;
        open_regular_at(dir.as_fd(), name, rel)
    }

    /// Write `contents` to `rel` atomically (temporary file, flush to disk,
    /// rename), creating its directories.
    pub fn write_atomic(&self, rel: &Path, contents: &[u8]) -> io::Result<()> {
        let (dirs, name) = Self::split(rel)?;
        let dir = self.walk_dirs(&dirs, true)?;
        write_in(dir.as_fd(), name, &mut &contents[..], true, None).map(|_| ())
    }

    /// Remove the file or link `rel` if it is there. A directory standing
    /// there is left alone (stores are never emptied recursively here); a
    /// missing directory on the way means there is nothing to remove.
    pub fn remove_file(&self, rel: &Path) -> io::Result<()> {
        let (dirs, name) = Self::split(rel)?;
        let dir = match self.walk_dirs(&dirs, false) {
            Ok(dir) => dir,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        remove_in(dir.as_fd(), name, rel)
    }

    /// Make the symbolic link `rel` pointing at `target` (the link is created,
    /// never followed).
    pub fn symlink(&self, target: &Path, rel: &Path) -> io::Result<()> {
        let (dirs, name) = Self::split(rel)?;
        let dir = self.walk_dirs(&dirs, true)?;
        rustix::fs::symlinkat(target, dir.as_fd(), name).map_err(io::Error::from)
    }

    /// Rename `from` to `to`, both beneath this tree (neither followed).
    pub fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (from_dirs, from_name) = Self::split(from)?;
        let (to_dirs, to_name) = Self::split(to)?;
        let a = self.walk_dirs(&from_dirs, false)?;
        let b = self.walk_dirs(&to_dirs, true)?;
        rustix::fs::renameat(a.as_fd(), from_name, b.as_fd(), to_name).map_err(io::Error::from)
    }

    /// Read the regular file `rel`, at most `limit` bytes; `None` if it is
    /// not there, an error if it is larger.
    pub fn read_limited(&self, rel: &Path, limit: u64) -> io::Result<Option<Vec<u8>>> {
        let file = match self.open_file(rel) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        file.take(limit + 1).read_to_end(&mut out)?;
        if out.len() as u64 > limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is larger than {limit} bytes", escape_path(rel)),
            ));
        }
        Ok(Some(out))
    }
}

/// Open `name` in `dir` read-only if it is a regular file (not a link, not
/// blocking on a fifo).
pub(crate) fn open_regular_at(dir: BorrowedFd<'_>, name: &OsStr, shown: &Path) -> io::Result<File> {
    let fd = match rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(e) if e == Errno::LOOP => return Err(refused(shown.to_path_buf(), "a symbolic link")),
        Err(e) => return Err(e.into()),
    };
    let file = File::from(fd);
    if !file.metadata()?.file_type().is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", escape_path(shown)),
        ));
    }
    Ok(file)
}

fn remove_in(dir: BorrowedFd<'_>, name: &OsStr, shown: &Path) -> io::Result<()> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Err(e) if e == Errno::NOENT => Ok(()),
        Err(e) => Err(e.into()),
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
            tracing::warn!(path = %escape_path(shown), "a directory stands where a file was expected; left alone");
            Ok(())
        }
        Ok(_) => match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
            Err(e) if e == Errno::NOENT => Ok(()),
            other => other.map_err(io::Error::from),
        },
    }
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A hidden temporary name for `name`, unique on this machine.
fn temp_name(name: &OsStr) -> OsString {
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut tmp = OsString::from(".");
    // keep temporary names short: a long final name must still fit NAME_MAX
    let bytes = name.as_bytes();
    tmp.push(OsStr::from_bytes(&bytes[..bytes.len().min(64)]));
    tmp.push(format!(
        ".{}-{n}-{}.warden-tmp",
        std::process::id(),
        crate::util::now_ns() % 1_000_000_007
    ));
    tmp
}

/// Write everything from `input` to `name` in `dir` through a temporary file
/// and a rename; returns size and SHA-256.
fn write_in(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    input: &mut dyn Read,
    sync: bool,
    mode: Option<u32>,
) -> io::Result<(u64, [u8; 32])> {
    let tmp = temp_name(name);
    let fd = rustix::fs::openat(
        dir,
        &tmp,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o666),
    )?;
    let result = (|| {
        let mut out = File::from(fd);
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 128 * 1024];
        let mut size = 0u64;
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])?;
            size += n as u64;
        }
        out.flush()?;
        if let Some(mode) = mode {
            rustix::fs::fchmod(&out, Mode::from_raw_mode(mode))?;
        }
        if sync {
            out.sync_all()?;
        }
        drop(out);
        rustix::fs::renameat(dir, &tmp, dir, name)?;
        Ok((size, hasher.finalize().into()))
    })();
    if result.is_err() {
        let _ = rustix::fs::unlinkat(dir, &tmp, AtFlags::empty());
    }
    result
}

/// Most directory handles a [`DirCache`] keeps open.
const MAX_CACHED_DIRS: usize = 64;

/// Writes many files beneath one tree, keeping the handles of the
/// directories it made so 10,000 files don't cost 10,000 walks.
#[derive(Debug)]
pub struct DirCache {
    tree: Tree,
    dirs: HashMap<PathBuf, Arc<OwnedFd>>,
}

impl DirCache {
    /// A cache over `tree`.
    pub fn new(tree: Tree) -> DirCache {
        DirCache {
            tree,
            dirs: HashMap::new(),
        }
    }

    /// The tree.
    pub fn tree(&self) -> &Tree {
        &self.tree
    }

    fn parent(&mut self, rel: &Path) -> io::Result<(Arc<OwnedFd>, OsString)> {
        let (dirs, name) = Tree::split(rel)?;
        let name = name.to_os_string();
        let key: PathBuf = dirs.iter().collect();
        if let Some(fd) = self.dirs.get(&key) {
            return Ok((Arc::clone(fd), name));
        }
        let fd = Arc::new(self.tree.walk_dirs(&dirs, true)?);
        if self.dirs.len() >= MAX_CACHED_DIRS {
            self.dirs.clear();
        }
        self.dirs.insert(key, Arc::clone(&fd));
        Ok((fd, name))
    }

    /// Write everything from `input` to `rel` atomically (not flushed to disk:
    /// outputs are many; the rename is what makes them visible whole).
    pub fn write_from(&mut self, input: &mut dyn Read, rel: &Path) -> io::Result<(u64, [u8; 32])> {
        self.write_from_mode(input, rel, None)
    }

    /// Like [`DirCache::write_from`], giving the file permission bits `mode`.
    pub fn write_from_mode(
        &mut self,
        input: &mut dyn Read,
        rel: &Path,
        mode: Option<u32>,
    ) -> io::Result<(u64, [u8; 32])> {
        let (dir, name) = self.parent(rel)?;
        write_in(dir.as_fd(), &name, input, false, mode)
    }

    /// Remove the file or link `rel` if it is there (see [`Tree::remove_file`]).
    pub fn remove_file(&mut self, rel: &Path) -> io::Result<()> {
        self.tree.remove_file(rel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_refuse_every_kind_of_link_in_every_component() {
        let root = tempfile::tempdir().unwrap();
        let outside = root.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(root.path().join("file"), "x").unwrap();
        let base = root.path().join("base");
        let tree = Tree::create(&base).unwrap();
        let targets: [&Path; 4] = [
            &outside,
            &root.path().join("file"),
            Path::new("/nonexistent/dangling"),
            Path::new("loop"),
        ];
        let rel = Path::new("a/b/c/out.csv");
        for depth in 0..3 {
            for target in targets {
                let _ = std::fs::remove_dir_all(base.join("a"));
                let prefix: PathBuf = rel.components().take(depth + 1).collect();
                std::fs::create_dir_all(base.join(&prefix).parent().unwrap()).unwrap();
                std::os::unix::fs::symlink(target, base.join(&prefix)).unwrap();
                let e = tree.write_atomic(rel, b"data").unwrap_err();
                let refused = link_refused(&e).unwrap_or_else(|| panic!("{e}"));
                assert_eq!(refused.component, prefix);
                assert!(tree.open_file(rel).is_err());
                assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
            }
        }
    }

    #[test]
    fn a_final_link_is_replaced_not_followed() {
        let root = tempfile::tempdir().unwrap();
        let victim = root.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let tree = Tree::create(&root.path().join("t")).unwrap();
        std::os::unix::fs::symlink(&victim, root.path().join("t/x")).unwrap();
        tree.write_atomic(Path::new("x"), b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert_eq!(
            std::fs::read_to_string(root.path().join("t/x")).unwrap(),
            "new"
        );
        assert!(tree.open_file(Path::new("x")).is_ok());
        std::os::unix::fs::symlink(&victim, root.path().join("t/y")).unwrap();
        assert!(link_refused(&tree.open_file(Path::new("y")).unwrap_err()).is_some());
        tree.remove_file(Path::new("y")).unwrap();
        assert!(victim.exists());
        assert!(tree.write_atomic(Path::new("../escape"), b"x").is_err());
    }
}
