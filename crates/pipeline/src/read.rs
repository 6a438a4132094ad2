//! Reading a `project.yaml` from disk: the one function every command uses.
//!
//! The file is hostile input. [`read_project_file`] therefore
//!
//! - opens it without blocking (`O_NONBLOCK`, so a FIFO cannot hang the open)
//!   and then asks the *opened* file what it is (`fstat`), so there is no gap
//!   between a check and the use: anything that is not a regular file (a FIFO,
//!   `/dev/zero`, a socket, a directory, a symlink to any of these) is refused
//!   with [`ReadError::NotARegularFile`];
//! - reads at most [`MAX_PROJECT_FILE_BYTES`] + 1 bytes, so a huge file is
//!   refused with [`ReadError::TooLarge`] after reading no more than that,
//!   whatever size the file claims or grows to.
//!
//! The server applies the same [`MAX_PROJECT_FILE_BYTES`] to the bytes it reads
//! from git.

use std::io::Read as _;
use std::path::{Path, PathBuf};

/// The largest `project.yaml` accepted, in bytes (4 MiB). Real files are under
/// 100 KB; a generated 10,000-action file is about 2.3 MB.
pub const MAX_PROJECT_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// What a path that is not a regular file turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileKind {
    /// A directory.
    Directory,
    /// A named pipe.
    Fifo,
    /// A character device (`/dev/zero`, a terminal).
    CharDevice,
    /// A block device.
    BlockDevice,
    /// A Unix socket.
    Socket,
    /// Anything else.
    Other,
}

impl std::fmt::Display for FileKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FileKind::Directory => "a directory",
            FileKind::Fifo => "a named pipe (FIFO)",
            FileKind::CharDevice => "a character device",
            FileKind::BlockDevice => "a block device",
            FileKind::Socket => "a socket",
            FileKind::Other => "not a regular file",
        })
    }
}

/// Why a project file could not be read. Paths display escaped
/// ([`crate::escape::escape_path`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// Nothing at the path.
    #[error(
        "`{}` cannot be read: it does not exist",
        crate::escape::escape_path(path)
    )]
    NotFound {
        /// The path.
        path: PathBuf,
    },
    /// A FIFO, device, socket or directory: refused without reading.
    #[error(
        "`{}` cannot be read: it is {kind}, not a regular file",
        crate::escape::escape_path(path)
    )]
    NotARegularFile {
        /// The path.
        path: PathBuf,
        /// What it is.
        kind: FileKind,
    },
    /// Larger than [`MAX_PROJECT_FILE_BYTES`].
    #[error(
        "`{}` cannot be read: it is larger than the limit of {limit} bytes ({} MiB) for a project file",
        crate::escape::escape_path(path),
        limit / (1024 * 1024)
    )]
    TooLarge {
        /// The path.
        path: PathBuf,
        /// The limit that was exceeded, in bytes.
        limit: u64,
    },
    /// Any other I/O failure (permission denied, a read error).
    #[error("`{}` cannot be read", crate::escape::escape_path(path))]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl ReadError {
    /// The path the error is about.
    pub fn path(&self) -> &Path {
        match self {
            ReadError::NotFound { path }
            | ReadError::NotARegularFile { path, .. }
            | ReadError::TooLarge { path, .. }
            | ReadError::Io { path, .. } => path,
        }
    }
}

/// Reads a project file: a regular file of at most [`MAX_PROJECT_FILE_BYTES`]
/// bytes (see the [module docs](self)). The bytes are returned as they are;
/// UTF-8 is the caller's concern (it is reported like a syntax error).
pub fn read_project_file(path: &Path) -> Result<Vec<u8>, ReadError> {
    read_limited(path, MAX_PROJECT_FILE_BYTES)
}

/// [`read_project_file`] with another limit (for tests and other inputs).
pub fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    let io = |source: std::io::Error| {
        if source.kind() == std::io::ErrorKind::NotFound {
            ReadError::NotFound {
                path: path.to_path_buf(),
            }
        } else {
            ReadError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    };
    let file = open_nonblocking(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(ReadError::NotARegularFile {
            path: path.to_path_buf(),
            kind: file_kind(&meta.file_type()),
        });
    }
    let too_large = || ReadError::TooLarge {
        path: path.to_path_buf(),
        limit,
    };
    if meta.len() > limit {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(too_large());
    }
    Ok(bytes)
}

#[cfg(unix)]
fn open_nonblocking(path: &Path) -> std::io::Result<std::fs::File> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    )?;
    Ok(std::fs::File::from(fd))
}

#[cfg(not(unix))]
fn open_nonblocking(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::File::open(path)
}

fn file_kind(t: &std::fs::FileType) -> FileKind {
    if t.is_dir() {
        return FileKind::Directory;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt as _;
        if t.is_fifo() {
            return FileKind::Fifo;
        }
        if t.is_char_device() {
            return FileKind::CharDevice;
        }
        if t.is_block_device() {
            return FileKind::BlockDevice;
        }
        if t.is_socket() {
            return FileKind::Socket;
        }
    }
    FileKind::Other
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_missing_file_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("project.yaml");
        assert!(matches!(
            read_project_file(&p),
            Err(ReadError::NotFound { .. })
        ));
    }

    #[test]
    fn a_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let e = read_project_file(dir.path()).unwrap_err();
        assert!(
            matches!(
                e,
                ReadError::NotARegularFile {
                    kind: FileKind::Directory,
                    ..
                }
            ),
            "{e:?}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("project.yaml");
        rustix::fs::mkfifoat(rustix::fs::CWD, &p, rustix::fs::Mode::from_raw_mode(0o600)).unwrap();
        // No writer ever opens the FIFO: a blocking open would hang here.
        let e = read_project_file(&p).unwrap_err();
        assert!(
            matches!(
                e,
                ReadError::NotARegularFile {
                    kind: FileKind::Fifo,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("named pipe"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn devices_and_symlinks_to_them_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("project.yaml");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        for p in [Path::new("/dev/zero"), Path::new("/dev/null"), &link] {
            let e = read_project_file(p).unwrap_err();
            assert!(
                matches!(
                    e,
                    ReadError::NotARegularFile {
                        kind: FileKind::CharDevice,
                        ..
                    }
                ),
                "{}: {e:?}",
                p.display()
            );
        }
    }

    #[test]
    fn the_path_in_messages_is_escaped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a\x1b[2J\u{202e}.yaml");
        let e = read_project_file(&p).unwrap_err().to_string();
        assert!(e.contains("a\\x1b[2J\\u{202e}.yaml"), "{e}");
        assert!(!e.contains('\x1b'));
    }

    #[test]
    fn the_real_limit_is_exact() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("project.yaml");
        let limit = usize::try_from(MAX_PROJECT_FILE_BYTES).unwrap();
        std::fs::write(&p, vec![b'#'; limit]).unwrap();
        assert_eq!(read_project_file(&p).unwrap().len(), limit);
        std::fs::write(&p, vec![b'#'; limit + 1]).unwrap();
        let e = read_project_file(&p).unwrap_err();
        assert!(matches!(e, ReadError::TooLarge { limit: l, .. } if l == MAX_PROJECT_FILE_BYTES));
        assert!(e.to_string().contains("4194304 bytes (4 MiB)"), "{e}");
    }

    /// `/proc` files claim a size of 0: the bound holds whatever the metadata says.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_bound_does_not_trust_the_claimed_size() {
        let p = Path::new("/proc/self/maps");
        assert_eq!(std::fs::metadata(p).unwrap().len(), 0);
        let e = read_limited(p, 10).unwrap_err();
        assert!(matches!(e, ReadError::TooLarge { limit: 10, .. }), "{e:?}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Sizes around a limit: at or under is read whole, over is refused.
        #[test]
        fn sizes_around_the_limit(limit in 0u64..5000, delta in -3i64..=3) {
            let size = (limit as i64 + delta).max(0) as u64;
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("project.yaml");
            let content: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
            std::fs::write(&p, &content).unwrap();
            match read_limited(&p, limit) {
                Ok(bytes) => {
                    prop_assert!(size <= limit);
                    prop_assert_eq!(bytes, content);
                }
                Err(ReadError::TooLarge { limit: l, .. }) => {
                    prop_assert!(size > limit);
                    prop_assert_eq!(l, limit);
                }
                Err(e) => prop_assert!(false, "{e:?}"),
            }
        }
    }
}
