//! Filesystem work: copying code in, walking a job directory, copying outputs
//! out atomically, removing trees. All of it is blocking; callers run it on
//! tokio's blocking pool.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags};

use crate::beneath::{DirCache, Tree};
use crate::error::{ExecutorError, Result};
use crate::glob::Glob;
use warden_pipeline::escape::escape_path;

/// What a directory entry is, without following symlinks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    BlockDevice,
    CharDevice,
    Other,
}

impl Kind {
    fn of(ft: fs::FileType) -> Kind {
        if ft.is_symlink() {
            Kind::Symlink
        } else if ft.is_file() {
            Kind::File
        } else if ft.is_dir() {
            Kind::Dir
        } else if ft.is_fifo() {
            Kind::Fifo
        } else if ft.is_socket() {
            Kind::Socket
        } else if ft.is_block_device() {
            Kind::BlockDevice
        } else if ft.is_char_device() {
            Kind::CharDevice
        } else {
            Kind::Other
        }
    }

    /// Why an entry of this kind is never an output.
    pub(crate) fn skip_reason(self) -> &'static str {
        match self {
            Kind::File => "regular file",
            Kind::Dir => "is a directory, not a file: directories are not outputs",
            Kind::Symlink => "is a symbolic link: links are never followed or copied",
            Kind::Fifo => "is a named pipe (fifo): special files are never copied",
            Kind::Socket => "is a socket: special files are never copied",
            Kind::BlockDevice | Kind::CharDevice => "is a device: special files are never copied",
            Kind::Other => "is not a regular file: never copied",
        }
    }

    pub(crate) fn describe(self) -> &'static str {
        match self {
            Kind::File => "regular file",
            Kind::Dir => "directory",
            Kind::Symlink => "symbolic link",
            Kind::Fifo => "named pipe",
            Kind::Socket => "socket",
            Kind::BlockDevice | Kind::CharDevice => "device",
            Kind::Other => "special file",
        }
    }
}

/// One entry found by [`walk`].
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// Relative path with `/` (lossy for non-UTF-8 names: see `utf8`).
    pub rel: String,
    /// Relative path as on disk, byte for byte.
    pub path: PathBuf,
    /// Whether every component of the path is valid UTF-8 (so `rel` is exact).
    pub utf8: bool,
    pub kind: Kind,
    /// Modification time, ns since the epoch (may be negative).
    pub mtime_ns: i128,
}

/// Deepest directory nesting a job's working directory may have (below its
/// root). Real studies nest a handful of levels; a tree deeper than this is
/// refused with a message that names no file.
pub(crate) const MAX_WALK_DEPTH: usize = 128;
/// Most entries a job's working directory may hold.
pub(crate) const MAX_WALK_ENTRIES: usize = 1_000_000;

/// Why a walk stopped. Never names an entry: the names are the job's.
#[derive(Debug)]
pub(crate) enum WalkError {
    /// Directories nested deeper than the limit.
    TooDeep(usize),
    /// More entries than the limit.
    TooMany(usize),
    /// The OS refused to read or inspect an entry.
    Io(io::Error),
}

impl std::fmt::Display for WalkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WalkError::TooDeep(n) => write!(f, "directories are nested more than {n} levels deep"),
            WalkError::TooMany(n) => write!(f, "it holds more than {n} files and directories"),
            // the bare OS error (its kind), without the path
            WalkError::Io(e) => write!(f, "an entry could not be read ({})", e.kind()),
        }
    }
}

fn mtime_ns(st: &rustix::fs::Stat) -> i128 {
    st.st_mtime as i128 * 1_000_000_000 + st.st_mtime_nsec as i128
}

fn kind_of_mode(mode: u32) -> Kind {
    use rustix::fs::FileType as F;
    match F::from_raw_mode(mode) {
        F::RegularFile => Kind::File,
        F::Directory => Kind::Dir,
        F::Symlink => Kind::Symlink,
        F::Fifo => Kind::Fifo,
        F::Socket => Kind::Socket,
        F::BlockDevice => Kind::BlockDevice,
        F::CharacterDevice => Kind::CharDevice,
        _ => Kind::Other,
    }
}

/// Visit every entry under `tree` (not its root), never following symlinks,
/// without recursion, through directory handles (so no path is ever longer
/// than one name: a tree deeper than `PATH_MAX` is no problem), within
/// `max_depth` and `max_entries`. `visit` gets the handle of the entry's
/// directory, its name and the entry.
pub(crate) fn walk_with(
    tree: &Tree,
    max_depth: usize,
    max_entries: usize,
    mut visit: impl FnMut(BorrowedFd<'_>, &OsStr, &Entry) -> io::Result<()>,
) -> std::result::Result<(), WalkError> {
    let mut stack: Vec<(PathBuf, usize)> = vec![(PathBuf::new(), 0)];
    let mut seen = 0usize;
    while let Some((rel_dir, depth)) = stack.pop() {
        let dir = if rel_dir.as_os_str().is_empty() {
            tree.clone()
        } else {
            match tree.subtree(&rel_dir, false) {
                Ok(d) => d,
                // vanished meanwhile
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(WalkError::Io(e)),
            }
        };
        let mut items =
            rustix::fs::Dir::read_from(dir.fd()).map_err(|e| WalkError::Io(e.into()))?;
        while let Some(item) = items.read() {
            let item = item.map_err(|e| WalkError::Io(e.into()))?;
            let name = OsStr::from_bytes(item.file_name().to_bytes());
            if name == "." || name == ".." {
                continue;
            }
            seen += 1;
            if seen > max_entries {
                return Err(WalkError::TooMany(max_entries));
            }
            let st = match rustix::fs::statat(dir.fd(), name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(e) if e == rustix::io::Errno::NOENT => continue,
                Err(e) => return Err(WalkError::Io(e.into())),
            };
            let kind = kind_of_mode(st.st_mode);
            let path = rel_dir.join(name);
            let entry = Entry {
                rel: path_to_rel(&path),
                utf8: path.to_str().is_some(),
                path,
                kind,
                mtime_ns: mtime_ns(&st),
            };
            visit(dir.fd(), name, &entry).map_err(WalkError::Io)?;
            if kind == Kind::Dir {
                if depth + 1 >= max_depth {
                    return Err(WalkError::TooDeep(max_depth));
                }
                stack.push((entry.path, depth + 1));
            }
        }
    }
    Ok(())
}

/// Every entry under `tree` (see [`walk_with`]).
pub(crate) fn walk(tree: &Tree) -> std::result::Result<Vec<Entry>, WalkError> {
    let mut out = Vec::new();
    walk_with(tree, MAX_WALK_DEPTH, MAX_WALK_ENTRIES, |_, _, e| {
        out.push(e.clone());
        Ok(())
    })?;
    Ok(out)
}

fn path_to_rel(path: &Path) -> String {
    let mut s = String::new();
    for (i, c) in path.components().enumerate() {
        if i > 0 {
            s.push('/');
        }
        s.push_str(&c.as_os_str().to_string_lossy());
    }
    s
}

/// What [`copy_code_tree`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct CodeCopy {
    pub files: usize,
    pub symlinks: usize,
    pub skipped_special: Vec<String>,
}

/// Copy the code tree `src` into `dst`: regular files are copied (with their
/// permissions), symlinks recreated as symlinks (never followed), directories
/// walked; `.git` (anywhere), the top-level `metadata`, entries matching an
/// `exclude` glob and the directories in `skip_dirs` are left out; special
/// files are skipped and reported. Every write goes through `dst`'s handle.
pub(crate) fn copy_code_tree(
    src: &Path,
    dst: &Tree,
    exclude: &[Glob],
    skip_dirs: &[PathBuf],
) -> Result<CodeCopy> {
    let mut stats = CodeCopy::default();
    let mut out = DirCache::new(dst.clone());
    let mut stack: Vec<PathBuf> = vec![PathBuf::new()];
    while let Some(rel_dir) = stack.pop() {
        let dir = src.join(&rel_dir);
        let mut items: Vec<fs::DirEntry> = fs::read_dir(&dir)
            .map_err(ExecutorError::io("reading code directory", &dir))?
            .collect::<io::Result<_>>()
            .map_err(ExecutorError::io("reading code directory", &dir))?;
        items.sort_by_key(|e| e.file_name());
        for item in items {
            let name = item.file_name();
            let rel_path = rel_dir.join(&name);
            let rel = path_to_rel(&rel_path);
            if name == ".git" || (rel_dir.as_os_str().is_empty() && name == "metadata") {
                continue;
            }
            if exclude.iter().any(|g| g.matches(&rel)) {
                continue;
            }
            let from = item.path();
            let to = dst.path().join(&rel_path);
            let ft = item
                .file_type()
                .map_err(ExecutorError::io("inspecting", &from))?;
            match Kind::of(ft) {
                Kind::Dir => {
                    if skip_dirs.iter().any(|d| d == &from) {
                        continue;
                    }
                    dst.subtree(&rel_path, true)
                        .map_err(ExecutorError::io("creating directory", &to))?;
                    stack.push(rel_path);
                }
                Kind::File => {
                    let mut input = open_regular(&from)
                        .map_err(ExecutorError::io("copying code file", &from))?;
                    let mode = input
                        .metadata()
                        .map_err(ExecutorError::io("inspecting", &from))?
                        .mode();
                    out.write_from_mode(&mut input, &rel_path, Some(mode & 0o7777))
                        .map_err(ExecutorError::io("copying code file to", &to))?;
                    stats.files += 1;
                }
                Kind::Symlink => {
                    let target =
                        fs::read_link(&from).map_err(ExecutorError::io("reading link", &from))?;
                    dst.symlink(&target, &rel_path)
                        .map_err(ExecutorError::io("creating link", &to))?;
                    stats.symlinks += 1;
                }
                other => {
                    tracing::warn!(path = %escape_path(&from), kind = other.describe(), "not copying special file into job");
                    stats.skipped_special.push(rel);
                }
            }
        }
    }
    Ok(stats)
}

/// Open `path` for reading only if it is a regular file, without following a
/// final symlink and without blocking on a fifo. For a path the caller
/// trusts up to its last component (the code directory); files in a job or a
/// store are opened with [`Tree::open_file`].
pub(crate) fn open_regular(path: &Path) -> io::Result<fs::File> {
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io::Error::from)?;
    let file = fs::File::from(fd);
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", escape_path(path)),
        ));
    }
    Ok(file)
}

/// Copies regular files from one tree into another atomically, never
/// following a link on either side.
pub(crate) struct AtomicCopier {
    out: DirCache,
}

impl AtomicCopier {
    /// A copier writing beneath `dest`.
    pub(crate) fn new(dest: Tree) -> AtomicCopier {
        AtomicCopier {
            out: DirCache::new(dest),
        }
    }

    /// Copy the regular file `rel` of `src` to `dest_rel` beneath the
    /// destination through a temporary file and a rename; returns the size
    /// and SHA-256 of what was copied. A link or special file (anywhere in
    /// `rel`) is refused. A half-written file is never visible.
    pub(crate) fn copy(
        &mut self,
        src: &Tree,
        rel: &Path,
        dest_rel: &Path,
    ) -> io::Result<(u64, [u8; 32])> {
        let mut input = src.open_file(rel)?;
        self.out.write_from(&mut input, dest_rel)
    }

    /// Write everything from `input` to `dest_rel` atomically.
    pub(crate) fn write_from(
        &mut self,
        input: &mut dyn io::Read,
        dest_rel: &Path,
    ) -> io::Result<(u64, [u8; 32])> {
        self.out.write_from(input, dest_rel)
    }

    /// The destination tree.
    pub(crate) fn dest(&self) -> &Tree {
        self.out.tree()
    }
}

/// Lower-case hex of bytes.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Remove the tree `name` in `parent`, never following symlinks and without
/// recursion (a tree deeper than `PATH_MAX` goes too); if something refuses
/// (a job left read-only directories), make directories writable and go on.
/// Returns the problems met, empty if all went. Problems name no entry
/// below `name`.
pub(crate) fn remove_tree_in(parent: &Tree, name: &Path) -> Vec<String> {
    let shown = parent.path().join(name);
    match rustix::fs::statat(parent.fd(), name, AtFlags::SYMLINK_NOFOLLOW) {
        Err(e) if e == rustix::io::Errno::NOENT => return Vec::new(),
        Err(e) => return vec![format!("inspecting {}: {e}", escape_path(&shown))],
        Ok(st) if kind_of_mode(st.st_mode) != Kind::Dir => {
            return match rustix::fs::unlinkat(parent.fd(), name, AtFlags::empty()) {
                Ok(()) => Vec::new(),
                Err(e) => vec![format!("removing {}: {e}", escape_path(&shown))],
            };
        }
        Ok(_) => {}
    }
    // Depth-first, post-order: a directory is removed once it is empty.
    // Each directory is reopened from `parent` by its components (no link
    // followed), so only one handle per level is open at a time.
    let mut stack: Vec<(PathBuf, bool)> = vec![(name.to_path_buf(), false)];
    let mut problems = Vec::new();
    while let Some((rel, emptied)) = stack.pop() {
        let (dir_rel, base) = match (rel.parent(), rel.file_name()) {
            (Some(p), Some(b)) => (p.to_path_buf(), b.to_os_string()),
            _ => continue,
        };
        let holder = if dir_rel.as_os_str().is_empty() {
            Ok(parent.clone())
        } else {
            parent.subtree(&dir_rel, false)
        };
        let holder = match holder {
            Ok(h) => h,
            Err(e) => {
                problems.push(format!(
                    "opening a directory under {}: {e}",
                    escape_path(&shown)
                ));
                continue;
            }
        };
        if emptied {
            if let Err(e) = rustix::fs::unlinkat(holder.fd(), &base, AtFlags::REMOVEDIR)
                && e != rustix::io::Errno::NOENT
            {
                problems.push(format!(
                    "removing a directory under {}: {e}",
                    escape_path(&shown)
                ));
            }
            continue;
        }
        let mut opened = holder.subtree(Path::new(&base), false);
        if matches!(&opened, Err(e) if e.kind() == io::ErrorKind::PermissionDenied) {
            // a job left it unreadable: open it up (it was a directory, not a
            // link, when listed; chmodat cannot refuse links on every kernel)
            let _ = rustix::fs::chmodat(
                holder.fd(),
                &base,
                Mode::from_raw_mode(0o700),
                AtFlags::empty(),
            );
            opened = holder.subtree(Path::new(&base), false);
        }
        if let Ok(dir) = &opened {
            // writable, so its entries can be removed
            let _ = rustix::fs::fchmod(dir.fd(), Mode::from_raw_mode(0o700));
        }
        let dir = match opened {
            Ok(d) => d,
            Err(e) => {
                problems.push(format!(
                    "opening a directory under {}: {e}",
                    escape_path(&shown)
                ));
                continue;
            }
        };
        stack.push((rel.clone(), true));
        let mut items = match rustix::fs::Dir::read_from(dir.fd()) {
            Ok(items) => items,
            Err(e) => {
                problems.push(format!(
                    "reading a directory under {}: {e}",
                    escape_path(&shown)
                ));
                continue;
            }
        };
        while let Some(Ok(item)) = items.read() {
            let child = OsStr::from_bytes(item.file_name().to_bytes());
            if child == "." || child == ".." {
                continue;
            }
            let is_dir = match item.file_type() {
                rustix::fs::FileType::Directory => true,
                rustix::fs::FileType::Unknown => {
                    rustix::fs::statat(dir.fd(), child, AtFlags::SYMLINK_NOFOLLOW)
                        .is_ok_and(|st| kind_of_mode(st.st_mode) == Kind::Dir)
                }
                _ => false,
            };
            if is_dir {
                stack.push((rel.join(child), false));
            } else if let Err(e) = rustix::fs::unlinkat(dir.fd(), child, AtFlags::empty())
                && e != rustix::io::Errno::NOENT
            {
                problems.push(format!(
                    "removing a file under {}: {e}",
                    escape_path(&shown)
                ));
            }
        }
    }
    problems
}

/// Change the owner of everything under and including `tree` (not following links).
pub(crate) fn chown_tree(tree: &Tree, uid: u32, gid: u32) -> Result<()> {
    let owner = (
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(gid)),
    );
    rustix::fs::fchown(tree.fd(), owner.0, owner.1)
        .map_err(|e| ExecutorError::io("changing owner of", tree.path())(e.into()))?;
    walk_with(tree, MAX_WALK_DEPTH, MAX_WALK_ENTRIES, |dir, name, _| {
        rustix::fs::chownat(dir, name, owner.0, owner.1, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(io::Error::from)
    })
    .map_err(|e| {
        ExecutorError::io("changing owner of", tree.path())(io::Error::other(e.to_string()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn tempdir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "warden-fsops-{}-{}",
            std::process::id(),
            crate::util::now_ns()
        ));
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn code_copy_keeps_links_and_skips_excluded() {
        let root = tempdir();
        let (src, dst) = (root.join("src"), root.join("dst"));
        fs::create_dir_all(src.join("analysis")).unwrap();
        fs::create_dir_all(src.join(".git/objects")).unwrap();
        fs::create_dir_all(src.join("metadata/volumes/x")).unwrap();
        fs::create_dir_all(src.join("output")).unwrap();
        fs::create_dir_all(src.join("sub/metadata")).unwrap();
        fs::write(src.join("project.yaml"), "version: '3.0'").unwrap();
        fs::write(src.join("analysis/a.py"), "print(1)").unwrap();
        fs::write(src.join("output/data.csv"), "x").unwrap();
        fs::write(src.join("output/keep.txt"), "x").unwrap();
        fs::write(src.join("sub/metadata/m.txt"), "x").unwrap();
        fs::write(src.join(".git/HEAD"), "x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", src.join("passwd-link")).unwrap();
        std::os::unix::fs::symlink("analysis", src.join("dir-link")).unwrap();
        fs::write(src.join("run.sh"), "echo hi").unwrap();
        fs::set_permissions(src.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        let tree = Tree::create(&dst).unwrap();

        let stats = copy_code_tree(&src, &tree, &[Glob::new("output/*.csv")], &[]).unwrap();
        assert_eq!(
            fs::metadata(dst.join("run.sh"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o755
        );
        assert_eq!(stats.files, 5);
        assert_eq!(stats.symlinks, 2);
        assert!(dst.join("analysis/a.py").is_file());
        assert!(dst.join("output/keep.txt").is_file());
        assert!(dst.join("sub/metadata/m.txt").is_file());
        assert!(!dst.join("output/data.csv").exists());
        assert!(!dst.join(".git").exists());
        assert!(!dst.join("metadata").exists());
        assert_eq!(
            fs::read_link(dst.join("passwd-link")).unwrap(),
            Path::new("/etc/passwd")
        );
        assert!(
            fs::symlink_metadata(dst.join("dir-link"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn atomic_copy_refuses_links_and_hashes() {
        let root = tempdir();
        fs::write(root.join("a.txt"), "hello").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("link.txt")).unwrap();
        let src = Tree::open(&root).unwrap();
        let mut copier = AtomicCopier::new(Tree::create(&root.join("out")).unwrap());
        let (size, hash) = copier
            .copy(&src, Path::new("a.txt"), Path::new("deep/a.txt"))
            .unwrap();
        assert_eq!(size, 5);
        assert_eq!(
            hex(&hash),
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert!(
            copier
                .copy(&src, Path::new("link.txt"), Path::new("link.txt"))
                .is_err()
        );
        assert!(!root.join("out/link.txt").exists());
        // no temporary files left behind
        let names: Vec<_> = fs::read_dir(root.join("out"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("deep")]);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn remove_tree_copes_with_read_only_dirs() {
        let root = tempdir();
        fs::create_dir_all(root.join("ro/inner")).unwrap();
        fs::write(root.join("ro/inner/f"), "x").unwrap();
        fs::set_permissions(root.join("ro/inner"), fs::Permissions::from_mode(0o500)).unwrap();
        fs::set_permissions(root.join("ro"), fs::Permissions::from_mode(0o500)).unwrap();
        let parent = Tree::open(root.parent().unwrap()).unwrap();
        let name = Path::new(root.file_name().unwrap());
        assert!(remove_tree_in(&parent, name).is_empty());
        assert!(!root.exists());
        assert!(remove_tree_in(&parent, name).is_empty());
    }
}
