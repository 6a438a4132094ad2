//! Filesystem work: copying code in, walking a job directory, copying outputs
//! out atomically, removing trees. All of it is blocking; callers run it on
//! tokio's blocking pool.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};
use sha2::{Digest, Sha256};

use crate::error::{ExecutorError, Result};
use crate::glob::Glob;
use crate::util::temp_path_for;

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
    /// Relative path with `/` (lossy for non-UTF-8 names).
    pub rel: String,
    /// Relative path as on disk.
    pub path: PathBuf,
    pub kind: Kind,
    /// Modification time, ns since the epoch (may be negative).
    pub mtime_ns: i128,
}

/// Every entry under `root` (not `root` itself), never following symlinks.
pub(crate) fn walk(root: &Path) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = vec![PathBuf::new()];
    while let Some(rel_dir) = stack.pop() {
        let dir = root.join(&rel_dir);
        let rd = fs::read_dir(&dir).map_err(ExecutorError::io("reading directory", &dir))?;
        for item in rd {
            let item = item.map_err(ExecutorError::io("reading directory", &dir))?;
            let meta = match item.metadata() {
                Ok(m) => m,
                // vanished meanwhile
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(ExecutorError::io("inspecting", item.path())(e)),
            };
            let kind = Kind::of(meta.file_type());
            let path = rel_dir.join(item.file_name());
            let rel = path_to_rel(&path);
            let mtime_ns = meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128;
            if kind == Kind::Dir {
                stack.push(path.clone());
            }
            out.push(Entry {
                rel,
                path,
                kind,
                mtime_ns,
            });
        }
    }
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

/// Copy the code tree `src` into `dst` (which exists): regular files are
/// copied, symlinks recreated as symlinks (never followed), directories
/// recursed; `.git` (anywhere), the top-level `metadata`, entries matching an
/// `exclude` glob and the directories in `skip_dirs` are left out; special
/// files are skipped and reported.
pub(crate) fn copy_code_tree(
    src: &Path,
    dst: &Path,
    exclude: &[Glob],
    skip_dirs: &[PathBuf],
) -> Result<CodeCopy> {
    let mut stats = CodeCopy::default();
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
            let to = dst.join(&rel_path);
            let ft = item
                .file_type()
                .map_err(ExecutorError::io("inspecting", &from))?;
            match Kind::of(ft) {
                Kind::Dir => {
                    if skip_dirs.iter().any(|d| d == &from) {
                        continue;
                    }
                    fs::create_dir(&to).map_err(ExecutorError::io("creating directory", &to))?;
                    stack.push(rel_path);
                }
                Kind::File => {
                    fs::copy(&from, &to).map_err(ExecutorError::io("copying code file", &from))?;
                    stats.files += 1;
                }
                Kind::Symlink => {
                    let target =
                        fs::read_link(&from).map_err(ExecutorError::io("reading link", &from))?;
                    std::os::unix::fs::symlink(&target, &to)
                        .map_err(ExecutorError::io("creating link", &to))?;
                    stats.symlinks += 1;
                }
                other => {
                    tracing::warn!(path = %from.display(), kind = other.describe(), "not copying special file into job");
                    stats.skipped_special.push(rel);
                }
            }
        }
    }
    Ok(stats)
}

/// Open `path` for reading only if it is a regular file, without following a
/// final symlink and without blocking on a fifo.
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
            format!("{} is not a regular file", path.display()),
        ));
    }
    Ok(file)
}

/// Copies files into a destination tree atomically, remembering which
/// directories exist so 10,000 files don't cost 10,000 `mkdir -p`.
#[derive(Default)]
pub(crate) struct AtomicCopier {
    made_dirs: HashSet<PathBuf>,
}

impl AtomicCopier {
    fn ensure_parent(&mut self, dest: &Path) -> io::Result<()> {
        if let Some(parent) = dest.parent()
            && !self.made_dirs.contains(parent)
        {
            fs::create_dir_all(parent)?;
            self.made_dirs.insert(parent.to_path_buf());
        }
        Ok(())
    }

    /// Copy the regular file `src` to `dest` through a temporary file in
    /// `dest`'s directory and a rename; returns the size and SHA-256 of what
    /// was copied. `src` must be a regular file (a symlink or special file is
    /// refused). A half-written file is never visible at `dest`.
    pub(crate) fn copy(&mut self, src: &Path, dest: &Path) -> io::Result<(u64, [u8; 32])> {
        let mut input = open_regular(src)?;
        self.write_from(&mut input, dest)
    }

    /// Write everything from `input` to `dest` atomically; returns size and SHA-256.
    pub(crate) fn write_from(
        &mut self,
        input: &mut dyn Read,
        dest: &Path,
    ) -> io::Result<(u64, [u8; 32])> {
        self.ensure_parent(dest)?;
        let tmp = temp_path_for(dest);
        let result = (|| {
            let mut out = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)?;
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
            drop(out);
            fs::rename(&tmp, dest)?;
            Ok((size, hasher.finalize().into()))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
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

/// Remove a file (or link) if it exists, not following symlinks. A directory
/// in its place is left alone: stores are never emptied recursively here.
pub(crate) fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => {
            tracing::warn!(path = %path.display(), "a directory stands where a file was expected; left alone");
            Ok(())
        }
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Remove the tree at `path`, never following symlinks; if something refuses
/// (a job left read-only directories), make directories writable and try
/// again. Returns the problems met, empty if all went.
pub(crate) fn remove_tree(path: &Path) -> Vec<String> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => return vec![format!("inspecting {}: {e}", path.display())],
        Ok(_) => {}
    }
    if fs::remove_dir_all(path).is_ok() {
        return Vec::new();
    }
    // Second attempt: open up permissions, then remove what we can, one by one.
    if let Ok(entries) = walk(path) {
        use std::os::unix::fs::PermissionsExt;
        let _ = fs::set_permissions(path, fs::Permissions::from_mode(0o700));
        for e in entries.iter().filter(|e| e.kind == Kind::Dir) {
            let _ = fs::set_permissions(path.join(&e.path), fs::Permissions::from_mode(0o700));
        }
    }
    match fs::remove_dir_all(path) {
        Ok(()) => Vec::new(),
        Err(e) => vec![format!("removing {}: {e}", path.display())],
    }
}

/// Change the owner of everything under and including `root` (not following links).
pub(crate) fn chown_tree(root: &Path, uid: u32, gid: u32) -> Result<()> {
    std::os::unix::fs::lchown(root, Some(uid), Some(gid))
        .map_err(ExecutorError::io("changing owner of", root))?;
    for entry in walk(root)? {
        let p = root.join(&entry.path);
        std::os::unix::fs::lchown(&p, Some(uid), Some(gid))
            .map_err(ExecutorError::io("changing owner of", &p))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        fs::create_dir_all(&dst).unwrap();

        let stats = copy_code_tree(&src, &dst, &[Glob::new("output/*.csv")], &[]).unwrap();
        assert_eq!(stats.files, 4);
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
        let mut copier = AtomicCopier::default();
        let (size, hash) = copier
            .copy(&root.join("a.txt"), &root.join("out/deep/a.txt"))
            .unwrap();
        assert_eq!(size, 5);
        assert_eq!(
            hex(&hash),
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert!(
            copier
                .copy(&root.join("link.txt"), &root.join("out/link.txt"))
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
        use std::os::unix::fs::PermissionsExt;
        let root = tempdir();
        fs::create_dir_all(root.join("ro/inner")).unwrap();
        fs::write(root.join("ro/inner/f"), "x").unwrap();
        fs::set_permissions(root.join("ro/inner"), fs::Permissions::from_mode(0o500)).unwrap();
        fs::set_permissions(root.join("ro"), fs::Permissions::from_mode(0o500)).unwrap();
        assert!(remove_tree(&root).is_empty());
        assert!(!root.exists());
        assert!(remove_tree(&root).is_empty());
    }
}
