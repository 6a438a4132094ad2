//! Branch and commit validation, reading a file at a commit, exporting a tree.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use common::{Origin, entries, git};
use warden_git::{BareRepo, ErrorKind, GitError, RepoCache};

/// An origin with `main` (two commits) and `feature` (one more commit on top of the
/// first), cached; returns (origin, cache dir, repo, first, second, feature commit).
fn setup() -> (Origin, tempfile::TempDir, BareRepo, String, String, String) {
    let origin = Origin::new();
    let first = origin.commit(&[("project.yaml", "version: '3.0'\n")], "first");
    origin.push("main");
    origin.checkout_new_branch("feature");
    let feature = origin.commit(&[("feature.txt", "only on feature\n")], "feature");
    origin.push("feature");
    origin.checkout("main");
    let second = origin.commit(&[("analysis/model.py", "print('hi')\n")], "second");
    origin.push("main");
    let cache_dir = tempfile::tempdir().unwrap();
    let repo = RepoCache::new(cache_dir.path())
        .ensure(&origin.url())
        .unwrap();
    (origin, cache_dir, repo, first, second, feature)
}

#[test]
fn branch_head_is_the_tip_of_the_branch() {
    let (_origin, _cache, repo, _first, second, feature) = setup();
    assert_eq!(repo.branch_head("main").unwrap().as_str(), second);
    assert_eq!(repo.branch_head("feature").unwrap().as_str(), feature);
}

#[test]
fn missing_branch_has_the_reference_message() {
    let (origin, _cache, repo, ..) = setup();
    let err = repo.branch_head("nope").unwrap_err();
    assert_eq!(err.to_string(), "Could not find branch 'nope'");
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.is_not_found());
    assert_eq!(err.repo(), Some(origin.url().as_str()));
    assert!(matches!(err, GitError::BranchNotFound { ref branch, .. } if branch == "nope"));
}

#[test]
fn revision_syntax_and_other_refs_are_not_branches() {
    let (origin, _cache, _repo, ..) = setup();
    origin.push_ref("refs/pull/7/head");
    git(&origin.work, &["tag", "v1"]);
    git(&origin.work, &["push", "--quiet", "origin", "v1"]);
    let cache = tempfile::tempdir().unwrap();
    let repo = RepoCache::new(cache.path()).ensure(&origin.url()).unwrap();
    for name in [
        "main^",
        "main~1",
        "HEAD",
        "v1",
        "pull/7/head",
        "refs/heads/main",
        "-h",
        "@{-1}",
    ] {
        let err = repo.branch_head(name).unwrap_err();
        assert_eq!(err.to_string(), format!("Could not find branch '{name}'"));
    }
    let err = repo.branch_head("").unwrap_err();
    assert_eq!(err.to_string(), "A branch name must be supplied");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

#[test]
fn commit_on_branch_accepts_full_and_short_ids() {
    let (_origin, _cache, repo, first, second, _feature) = setup();
    // The head itself, an ancestor, and abbreviations of both (any case).
    assert_eq!(
        repo.commit_on_branch(&second, "main").unwrap().as_str(),
        second
    );
    assert_eq!(
        repo.commit_on_branch(&first, "main").unwrap().as_str(),
        first
    );
    assert_eq!(
        repo.commit_on_branch(&first[..7], "main").unwrap().as_str(),
        first
    );
    let upper = second[..10].to_ascii_uppercase();
    assert_eq!(
        repo.commit_on_branch(&upper, "main").unwrap().as_str(),
        second
    );
    // The first commit is also on feature, which branched from it.
    assert_eq!(
        repo.commit_on_branch(&first, "feature").unwrap().as_str(),
        first
    );
}

#[test]
fn commit_only_on_another_branch_is_refused() {
    let (_origin, _cache, repo, _first, second, feature) = setup();
    let err = repo.commit_on_branch(&feature, "main").unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("Could not find commit on branch 'main': {feature}")
    );
    assert_eq!(err.kind(), ErrorKind::NotFound);
    // The message repeats the id as the caller gave it, abbreviated or not.
    let err = repo.commit_on_branch(&second[..8], "feature").unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "Could not find commit on branch 'feature': {}",
            &second[..8]
        )
    );
}

#[test]
fn commit_only_in_a_pull_request_ref_is_refused() {
    let (origin, _cache, _repo, ..) = setup();
    origin.checkout_new_branch("pr");
    let pr = origin.commit(&[("pr.txt", "from a fork\n")], "pr");
    origin.push_ref("refs/pull/1/head");
    let cache = tempfile::tempdir().unwrap();
    let repo = RepoCache::new(cache.path()).ensure(&origin.url()).unwrap();
    // Branches only are fetched, so the commit is not even in the cache.
    let err = repo.commit_on_branch(&pr, "main").unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("Could not find commit on branch 'main': {pr}")
    );
}

#[test]
fn unknown_or_malformed_commits_are_not_on_the_branch() {
    let (_origin, _cache, repo, ..) = setup();
    for commit in [
        "0000000000000000000000000000000000000000",
        "deadbee",
        "abc",
        "main",
        "HEAD~1",
        "--all",
        "",
    ] {
        let err = repo.commit_on_branch(commit, "main").unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("Could not find commit on branch 'main': {commit}")
        );
    }
    // A missing branch is reported before the commit.
    let err = repo.commit_on_branch("deadbee", "gone").unwrap_err();
    assert_eq!(err.to_string(), "Could not find branch 'gone'");
}

#[test]
fn read_file_present_absent_and_not_a_file() {
    let (origin, _cache, repo, first, second, _feature) = setup();
    assert_eq!(
        repo.read_file(&first, "project.yaml").unwrap().as_deref(),
        Some(&b"version: '3.0'\n"[..])
    );
    let head = repo.branch_head("main").unwrap();
    assert_eq!(
        repo.read_file(&head, "analysis/model.py")
            .unwrap()
            .as_deref(),
        Some(&b"print('hi')\n"[..])
    );
    // Absent: at an older commit, or never there.
    assert_eq!(repo.read_file(&first, "analysis/model.py").unwrap(), None);
    assert_eq!(repo.read_file(&second, "nope.yaml").unwrap(), None);
    assert_eq!(repo.read_file(&second, "project.yaml/x").unwrap(), None);
    assert_eq!(repo.read_file(&second, "*.yaml").unwrap(), None);
    // A directory is not a file.
    let err = repo.read_file(&second, "analysis").unwrap_err();
    assert!(matches!(err, GitError::NotAFile { .. }), "{err}");
    // Unknown commit, bad paths.
    let err = repo.read_file("0123456789", "project.yaml").unwrap_err();
    assert!(matches!(err, GitError::CommitNotFound { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!("Could not find commit 0123456789 in {}", origin.url())
    );
    for bad in ["/project.yaml", "../x", "a/./b", ""] {
        let err = repo.read_file(&second, bad).unwrap_err();
        assert!(matches!(err, GitError::InvalidPath { .. }), "{bad}: {err}");
    }
}

#[test]
fn checkout_exports_the_tree_with_symlinks_modes_and_no_git_dir() {
    let (origin, _cache, _repo, ..) = setup();
    let work = &origin.work;
    fs::create_dir_all(work.join("deep/er/est")).unwrap();
    fs::write(work.join("deep/er/est/data file é.csv"), "a,b\n1,2\n").unwrap();
    std::os::unix::fs::symlink("deep/er/est/data file é.csv", work.join("link.csv")).unwrap();
    std::os::unix::fs::symlink("../../project.yaml", work.join("deep/er/up.yaml")).unwrap();
    fs::write(work.join("run.sh"), "#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(work.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    // export-ignore applies to `git archive`, never to the code a job runs.
    fs::write(
        work.join(".gitattributes"),
        "secret-sauce.txt export-ignore\n",
    )
    .unwrap();
    fs::write(work.join("secret-sauce.txt"), "kept\n").unwrap();
    let commit = origin.commit(&[], "tree with everything");
    origin.push("main");
    let cache = tempfile::tempdir().unwrap();
    let repo = RepoCache::new(cache.path()).ensure(&origin.url()).unwrap();

    let dest = tempfile::tempdir().unwrap();
    let out = dest.path().join("code");
    repo.checkout(&commit, &out).unwrap();

    assert_eq!(
        entries(&out),
        [
            ".gitattributes",
            "analysis",
            "deep",
            "link.csv",
            "project.yaml",
            "run.sh",
            "secret-sauce.txt"
        ]
    );
    assert!(!out.join(".git").exists());
    assert_eq!(
        fs::read_to_string(out.join("deep/er/est/data file é.csv")).unwrap(),
        "a,b\n1,2\n"
    );
    assert_eq!(
        fs::read_to_string(out.join("analysis/model.py")).unwrap(),
        "print('hi')\n"
    );
    let link = fs::symlink_metadata(out.join("link.csv")).unwrap();
    assert!(link.file_type().is_symlink());
    assert_eq!(
        fs::read_link(out.join("link.csv")).unwrap().to_str(),
        Some("deep/er/est/data file é.csv")
    );
    assert!(
        fs::symlink_metadata(out.join("deep/er/up.yaml"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        fs::read_to_string(out.join("link.csv")).unwrap(),
        "a,b\n1,2\n"
    );
    let mode = fs::metadata(out.join("run.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111, "executable bit kept: {mode:o}");
    let mode = fs::metadata(out.join("project.yaml"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0, "plain file stays plain: {mode:o}");
    assert_eq!(
        fs::read_to_string(out.join("secret-sauce.txt")).unwrap(),
        "kept\n"
    );
    // The cached repository is untouched: still bare, no index left behind.
    assert!(!repo.path().join("index").exists());
}

#[test]
fn checkout_of_an_older_commit_and_an_unknown_one() {
    let (origin, _cache, repo, first, ..) = setup();
    let dest = tempfile::tempdir().unwrap();
    repo.checkout(&first[..7], dest.path()).unwrap();
    assert_eq!(entries(dest.path()), ["project.yaml"]);
    let err = repo.checkout("0123456789abcdef", dest.path()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("Could not find commit 0123456789abcdef in {}", origin.url())
    );
}

#[test]
fn tags_resolve_to_commits() {
    let (origin, _cache, _repo, first, second, _feature) = setup();
    git(&origin.work, &["tag", "v1.0", &first]);
    git(
        &origin.work,
        &["tag", "-a", "-m", "annotated", "v2.0", &second],
    );
    git(&origin.work, &["push", "--quiet", "origin", "--tags"]);
    let cache = tempfile::tempdir().unwrap();
    let repo = RepoCache::new(cache.path()).ensure(&origin.url()).unwrap();
    assert_eq!(repo.tag_commit("v1.0").unwrap().unwrap().as_str(), first);
    assert_eq!(repo.tag_commit("v2.0").unwrap().unwrap().as_str(), second);
    assert_eq!(repo.tag_commit("v3.0").unwrap(), None);
    assert_eq!(repo.tag_commit("v1.0^").unwrap(), None);
}

#[test]
fn open_reads_a_repository_directly() {
    let (origin, _cache, _repo, _first, second, _feature) = setup();
    let repo = BareRepo::open(&origin.bare).unwrap();
    assert_eq!(repo.branch_head("main").unwrap().as_str(), second);
    let repo = BareRepo::open(origin.work.join(".git")).unwrap();
    assert_eq!(repo.branch_head("main").unwrap().as_str(), second);
    let err = BareRepo::open(origin.tmp.path()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

/// Values git would read as options, wherever a caller's value reaches git: every
/// one is refused or not found, none is run as an option (no file written by
/// `--output=…`, no command run by `--upload-pack=…`), and git never fails on one.
#[test]
fn option_like_values_never_become_git_options() {
    let (origin, cache_dir, repo, first, ..) = setup();
    let marker = cache_dir.path().join("pwned");
    let marker_s = marker.display().to_string();
    let mut values: Vec<String> = vec![
        "-".into(),
        "--".into(),
        "-h".into(),
        "--all".into(),
        "--help".into(),
        "--end-of-options".into(),
        "--git-dir=/".into(),
        format!("--output={marker_s}"),
        format!("--upload-pack=touch {marker_s}"),
        format!("-oProxyCommand=touch {marker_s}"),
        "--exec-path=/tmp".into(),
        "-c".into(),
    ];
    for name in ["main", "abcd", &first[..7], &first] {
        values.push(format!("-{name}"));
        values.push(format!("--{name}"));
    }
    for value in &values {
        let v = value.as_str();
        let refused = |what: &str, err: GitError| {
            assert!(
                matches!(err.kind(), ErrorKind::NotFound | ErrorKind::InvalidInput),
                "{what}({v:?}) failed in git instead of being refused: {err}"
            );
        };
        refused("branch_head", repo.branch_head(v).unwrap_err());
        assert_eq!(repo.tag_commit(v).unwrap(), None, "tag_commit({v:?})");
        refused("resolve_commit", repo.resolve_commit(v).unwrap_err());
        refused(
            "commit_on_branch(commit)",
            repo.commit_on_branch(v, "main").unwrap_err(),
        );
        refused(
            "commit_on_branch(branch)",
            repo.commit_on_branch(&first, v).unwrap_err(),
        );
        match repo.read_file(&first, v) {
            Ok(None) => {}
            Ok(Some(_)) => panic!("read_file({v:?}) found a file"),
            Err(e) => refused("read_file(path)", e),
        }
        refused(
            "read_file(commit)",
            repo.read_file(v, "project.yaml").unwrap_err(),
        );
        refused(
            "checkout",
            repo.checkout(v, &cache_dir.path().join("out")).unwrap_err(),
        );
        let cache = RepoCache::new(cache_dir.path().join("c"));
        refused("ensure", cache.ensure(v).unwrap_err());
        refused(
            "ensure_commit",
            cache.ensure_commit(&origin.url(), v).unwrap_err(),
        );
        assert!(!marker.exists(), "{v:?} ran as an option");
    }
    // A file whose name looks like an option is read as a file.
    let sha = origin.commit(&[("--output=x", "data\n")], "odd name");
    origin.push("main");
    let repo = RepoCache::new(cache_dir.path())
        .ensure(&origin.url())
        .unwrap();
    assert_eq!(
        repo.read_file(&sha, "--output=x").unwrap().as_deref(),
        Some(&b"data\n"[..])
    );
}

/// A size limit is checked against the blob's size before anything is read.
#[test]
fn read_file_limited_refuses_large_files_unread() {
    let (origin, _cache, _repo, ..) = setup();
    let cache = tempfile::tempdir().unwrap();
    for size in [0usize, 1, 99, 100, 101, 4096, 1 << 20] {
        let sha = origin.commit(&[("big.txt", &"x".repeat(size))], "sized");
        origin.push("main");
        let repo = RepoCache::new(cache.path()).ensure(&origin.url()).unwrap();
        for limit in [0u64, 1, 100, 4096, u64::MAX] {
            match repo.read_file_limited(&sha, "big.txt", limit) {
                Ok(Some(bytes)) => {
                    assert!(size as u64 <= limit, "{size} > {limit} was read");
                    assert_eq!(bytes.len(), size);
                }
                Ok(None) => panic!("big.txt missing"),
                Err(err) => {
                    assert!(size as u64 > limit, "{size} <= {limit} refused: {err}");
                    assert_eq!(err.kind(), ErrorKind::InvalidInput);
                    assert!(
                        matches!(&err, GitError::FileTooLarge { size: s, limit: l, path, .. }
                            if *s == size as u64 && *l == limit && path == "big.txt"),
                        "{err:?}"
                    );
                    let text = err.to_string();
                    assert!(
                        text.contains(&format!("{size} bytes"))
                            && text.contains(&format!("limit of {limit} bytes")),
                        "{text}"
                    );
                }
            }
        }
        assert_eq!(
            repo.read_file(&sha, "big.txt").unwrap().unwrap().len(),
            size
        );
    }
}
