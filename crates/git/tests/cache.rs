//! The bare-repository cache: naming, reuse, fetching, pruning, concurrency.

mod common;

use std::fs;
use std::sync::{Arc, Barrier};
use std::time::Instant;

use common::{Origin, entries, git};
use warden_git::{ErrorKind, GitError, RepoCache};

#[test]
fn the_cache_is_reused_and_a_fetch_picks_up_new_commits() {
    let origin = Origin::new();
    let first = origin.commit(&[("project.yaml", "one\n")], "first");
    origin.push("main");
    let dir = tempfile::tempdir().unwrap();
    let cache = RepoCache::new(dir.path().join("repos"));

    let repo = cache.ensure(&origin.url()).unwrap();
    assert_eq!(repo.branch_head("main").unwrap().as_str(), first);
    assert_eq!(repo.path(), cache.path_for(&origin.url()).unwrap());
    let name = repo
        .path()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        name.starts_with("origin-") && name.ends_with(".git"),
        "{name}"
    );
    assert_eq!(
        entries(cache.dir()),
        [name.clone(), name.replace(".git", ".lock")]
    );

    let second = origin.commit(&[("project.yaml", "two\n")], "second");
    origin.push("main");
    // Before a fetch the cache still has the old head; after one, the new.
    assert_eq!(repo.branch_head("main").unwrap().as_str(), first);
    let again = cache.ensure(&origin.url()).unwrap();
    assert_eq!(again.path(), repo.path());
    assert_eq!(again.branch_head("main").unwrap().as_str(), second);
    assert_eq!(
        again.read_file(&second, "project.yaml").unwrap().unwrap(),
        b"two\n"
    );
    // Still one repository in the cache, and no remote (so no URL) in its config.
    assert_eq!(entries(cache.dir()).len(), 2);
    let config = fs::read_to_string(repo.path().join("config")).unwrap();
    assert!(!config.contains("[remote"), "{config}");
    // The file:// form of the same path shares the entry.
    let via_url = cache.ensure(&format!("file://{}", origin.url())).unwrap();
    assert_eq!(via_url.path(), repo.path());
}

#[test]
fn deleted_and_force_pushed_branches_are_followed() {
    let origin = Origin::new();
    let base = origin.commit(&[("a", "a\n")], "base");
    origin.push("main");
    origin.checkout_new_branch("topic");
    let topic = origin.commit(&[("b", "b\n")], "topic");
    origin.push("topic");
    let dir = tempfile::tempdir().unwrap();
    let cache = RepoCache::new(dir.path());
    let repo = cache.ensure(&origin.url()).unwrap();
    assert_eq!(repo.branch_head("topic").unwrap().as_str(), topic);

    // Delete `topic` upstream and rewrite `main` with a commit that drops `base`.
    git(
        &origin.work,
        &["push", "--quiet", "origin", "--delete", "topic"],
    );
    git(
        &origin.work,
        &["checkout", "--quiet", "--orphan", "rewritten"],
    );
    let rewritten = origin.commit(&[("c", "c\n")], "rewritten");
    origin.push("main");
    cache.ensure(&origin.url()).unwrap();
    assert_eq!(
        repo.branch_head("topic").unwrap_err().to_string(),
        "Could not find branch 'topic'"
    );
    assert_eq!(repo.branch_head("main").unwrap().as_str(), rewritten);
    // `base` is still in the object store but no longer on main.
    assert_eq!(
        repo.commit_on_branch(&base, "main")
            .unwrap_err()
            .to_string(),
        format!("Could not find commit on branch 'main': {base}")
    );
}

#[test]
fn concurrent_ensure_from_eight_threads_clones_once() {
    let origin = Origin::new();
    let mut head = String::new();
    for i in 0..20 {
        head = origin.commit(&[(&format!("f{i}.txt"), &format!("{i}\n"))], "c");
    }
    origin.push("main");
    let dir = tempfile::tempdir().unwrap();
    let cache = Arc::new(RepoCache::new(dir.path()));
    let barrier = Arc::new(Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (cache, barrier, url) = (cache.clone(), barrier.clone(), origin.url());
            std::thread::spawn(move || {
                barrier.wait();
                let repo = cache.ensure(&url).unwrap();
                let head = repo.branch_head("main").unwrap();
                let file = repo.read_file(&head, "f19.txt").unwrap();
                (repo.path().to_owned(), head, file)
            })
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    for (path, commit, file) in &results {
        assert_eq!(path, &results[0].0);
        assert_eq!(commit.as_str(), head);
        assert_eq!(file.as_deref(), Some(&b"19\n"[..]));
    }
    // Exactly one clone, no partial leftover.
    assert_eq!(entries(dir.path()).len(), 2, "{:?}", entries(dir.path()));
    let repo = cache.ensure(&origin.url()).unwrap();
    git(repo.path(), &["fsck", "--no-progress"]);
}

#[test]
fn concurrent_ensure_while_upstream_moves() {
    let origin = Origin::new();
    origin.commit(&[("a", "0\n")], "c0");
    origin.push("main");
    let dir = tempfile::tempdir().unwrap();
    let cache = Arc::new(RepoCache::new(dir.path()));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (cache, url) = (cache.clone(), origin.url());
            std::thread::spawn(move || {
                for _ in 0..5 {
                    let repo = cache.ensure(&url).unwrap();
                    let head = repo.branch_head("main").unwrap();
                    assert!(repo.read_file(&head, "a").unwrap().is_some());
                }
            })
        })
        .collect();
    for i in 1..5 {
        origin.commit(&[("a", &format!("{i}\n"))], "c");
        origin.push("main");
    }
    for w in workers {
        w.join().unwrap();
    }
    let repo = cache.ensure(&origin.url()).unwrap();
    git(repo.path(), &["fsck", "--no-progress"]);
}

#[test]
fn ensure_commit_skips_the_fetch_when_the_commit_is_cached() {
    let origin = Origin::new();
    let first = origin.commit(&[("a", "a\n")], "first");
    origin.push("main");
    let dir = tempfile::tempdir().unwrap();
    let cache = RepoCache::new(dir.path());
    cache.ensure(&origin.url()).unwrap();

    // Take the origin away: a fetch would now fail.
    let moved = origin.tmp.path().join("moved.git");
    fs::rename(&origin.bare, &moved).unwrap();
    let started = Instant::now();
    let repo = cache.ensure_commit(&origin.url(), &first[..8]).unwrap();
    assert_eq!(repo.resolve_commit(&first[..8]).unwrap().as_str(), first);
    eprintln!(
        "ensure_commit with a cached commit: {:?}",
        started.elapsed()
    );
    let err = cache.ensure(&origin.url()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(matches!(err, GitError::RepoNotFound { .. }), "{err}");

    // Back in place, a new commit is fetched for; an unknown one is an error.
    fs::rename(&moved, &origin.bare).unwrap();
    let second = origin.commit(&[("b", "b\n")], "second");
    origin.push("main");
    let repo = cache.ensure_commit(&origin.url(), &second).unwrap();
    assert_eq!(repo.branch_head("main").unwrap().as_str(), second);
    let err = cache
        .ensure_commit(&origin.url(), "0123456789abcdef")
        .unwrap_err();
    assert!(matches!(err, GitError::CommitNotFound { .. }), "{err}");
}

#[test]
fn cached_does_not_touch_the_network() {
    let origin = Origin::new();
    origin.commit(&[("a", "a\n")], "first");
    origin.push("main");
    let dir = tempfile::tempdir().unwrap();
    let cache = RepoCache::new(dir.path());
    assert!(cache.cached(&origin.url()).unwrap().is_none());
    cache.ensure(&origin.url()).unwrap();
    let second = origin.commit(&[("b", "b\n")], "second");
    origin.push("main");
    let repo = cache.cached(&origin.url()).unwrap().unwrap();
    assert_ne!(repo.branch_head("main").unwrap().as_str(), second);
}

#[test]
fn a_leftover_partial_clone_is_replaced() {
    let origin = Origin::new();
    let head = origin.commit(&[("a", "a\n")], "first");
    origin.push("main");
    let dir = tempfile::tempdir().unwrap();
    let cache = RepoCache::new(dir.path());
    let path = cache.path_for(&origin.url()).unwrap();
    let partial = path.with_extension("git.partial");
    fs::create_dir_all(partial.join("objects")).unwrap();
    fs::write(partial.join("junk"), "crashed here").unwrap();
    // And a target directory that is not a repository (say, a crash mid-rename).
    fs::create_dir_all(&path).unwrap();
    let repo = cache.ensure(&origin.url()).unwrap();
    assert_eq!(repo.branch_head("main").unwrap().as_str(), head);
    assert!(!partial.exists());
}

#[test]
fn missing_repositories_and_bad_locations() {
    let dir = tempfile::tempdir().unwrap();
    let cache = RepoCache::new(dir.path().join("cache"));
    let missing = dir.path().join("no-such-repo");
    let err = cache.ensure(missing.to_str().unwrap()).unwrap_err();
    assert!(matches!(err, GitError::RepoNotFound { .. }), "{err}");
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.to_string().contains("no-such-repo"), "{err}");
    // A failed first clone leaves nothing but the lock file behind.
    let left: Vec<_> = entries(&dir.path().join("cache"))
        .into_iter()
        .filter(|e| !e.ends_with(".lock"))
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // An existing directory that is not a repository.
    let not_repo = dir.path().join("plain");
    fs::create_dir_all(&not_repo).unwrap();
    let err = cache.ensure(not_repo.to_str().unwrap()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");

    for bad in [
        "relative/repo",
        "",
        "-oProxyCommand=evil",
        "https:///nohost",
    ] {
        let err = cache.ensure(bad).unwrap_err();
        assert!(matches!(err, GitError::InvalidRepo { .. }), "{bad}: {err}");
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
    }
}
