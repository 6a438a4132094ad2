//! Working-tree status for local runs.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{Origin, git};
use warden_git::worktree_status;

fn names(paths: &[PathBuf]) -> Vec<String> {
    paths
        .iter()
        .map(|p| p.to_str().unwrap().to_owned())
        .collect()
}

#[test]
fn lists_modified_deleted_untracked_and_ignored_files() {
    let origin = Origin::new();
    let work = &origin.work;
    let head = origin.commit(
        &[
            ("project.yaml", "version: '3.0'\n"),
            (".gitignore", "output/\n*.log\n"),
            ("analysis/model.py", "print(1)\n"),
            ("analysis/old name.py", "x\n"),
            ("doomed.txt", "bye\n"),
            ("staged.txt", "v1\n"),
        ],
        "first",
    );

    fs::write(work.join("analysis/model.py"), "print(2)\n").unwrap();
    fs::write(work.join("staged.txt"), "v2\n").unwrap();
    git(work, &["add", "staged.txt"]);
    fs::remove_file(work.join("doomed.txt")).unwrap();
    git(
        work,
        &["mv", "analysis/old name.py", "analysis/new name.py"],
    );
    fs::write(work.join("added.txt"), "new and staged\n").unwrap();
    git(work, &["add", "added.txt"]);
    fs::write(work.join("my notes.txt"), "untracked with a space\n").unwrap();
    fs::write(work.join("café ☕.R"), "unicode\n").unwrap();
    fs::create_dir_all(work.join("scratch/deeper")).unwrap();
    fs::write(work.join("scratch/deeper/tmp.csv"), "a\n").unwrap();
    fs::create_dir_all(work.join("output")).unwrap();
    fs::write(work.join("output/input.csv"), "patient_id\n").unwrap();
    fs::write(work.join("output/more.csv"), "patient_id\n").unwrap();
    fs::write(work.join("run.log"), "log\n").unwrap();

    let status = worktree_status(work).unwrap().expect("a work tree");
    assert_eq!(status.root, fs::canonicalize(work).unwrap());
    assert_eq!(status.head.as_ref().unwrap().as_str(), head);
    assert_eq!(status.branch.as_deref(), Some("main"));
    assert_eq!(
        names(&status.modified),
        [
            "added.txt",
            "analysis/model.py",
            "analysis/new name.py",
            "staged.txt"
        ]
    );
    assert_eq!(
        names(&status.deleted),
        ["analysis/old name.py", "doomed.txt"]
    );
    assert_eq!(
        names(&status.untracked),
        ["café ☕.R", "my notes.txt", "scratch/deeper/tmp.csv"]
    );
    assert_eq!(names(&status.ignored), ["output/", "run.log"]);
    assert!(!status.is_clean());

    // Running status did not take the index lock nor leave anything behind.
    assert!(!work.join(".git/index.lock").exists());
}

#[test]
fn a_clean_tree_and_a_subdirectory() {
    let origin = Origin::new();
    let work = &origin.work;
    origin.commit(
        &[
            ("study/project.yaml", "version: '3.0'\n"),
            ("study/analysis/a.py", "a\n"),
            ("elsewhere/b.py", "b\n"),
        ],
        "first",
    );
    let study = work.join("study");
    let status = worktree_status(&study).unwrap().unwrap();
    assert!(status.is_clean(), "{status:?}");
    assert!(status.ignored.is_empty());

    // Changes outside the directory asked about are not listed; paths inside are
    // relative to it.
    fs::write(work.join("elsewhere/b.py"), "changed\n").unwrap();
    fs::write(work.join("stray.txt"), "x\n").unwrap();
    fs::write(study.join("analysis/a.py"), "changed\n").unwrap();
    fs::write(study.join("analysis/new file.py"), "x\n").unwrap();
    let status = worktree_status(&study).unwrap().unwrap();
    assert_eq!(names(&status.modified), ["analysis/a.py"]);
    assert_eq!(names(&status.untracked), ["analysis/new file.py"]);
    assert_eq!(status.root, fs::canonicalize(work).unwrap());

    // The whole tree, from the top.
    let status = worktree_status(work).unwrap().unwrap();
    assert_eq!(
        names(&status.modified),
        ["elsewhere/b.py", "study/analysis/a.py"]
    );
    assert_eq!(
        names(&status.untracked),
        ["stray.txt", "study/analysis/new file.py"]
    );
}

#[test]
fn file_removed_from_the_index_but_kept_on_disk_counts_as_modified() {
    let origin = Origin::new();
    origin.commit(&[("data.csv", "a\n")], "first");
    git(&origin.work, &["rm", "--quiet", "--cached", "data.csv"]);
    let status = worktree_status(&origin.work).unwrap().unwrap();
    assert_eq!(names(&status.modified), ["data.csv"]);
    assert!(
        status.deleted.is_empty() && status.untracked.is_empty(),
        "{status:?}"
    );
}

#[test]
fn no_commit_yet_and_detached_head() {
    let origin = Origin::new();
    fs::write(origin.work.join("project.yaml"), "x\n").unwrap();
    let status = worktree_status(&origin.work).unwrap().unwrap();
    assert_eq!(status.head, None);
    assert_eq!(status.branch.as_deref(), Some("main"));
    assert_eq!(names(&status.untracked), ["project.yaml"]);

    let commit = origin.commit(&[], "first");
    git(&origin.work, &["checkout", "--quiet", "--detach"]);
    let status = worktree_status(&origin.work).unwrap().unwrap();
    assert_eq!(status.head.unwrap().as_str(), commit);
    assert_eq!(status.branch, None);
    assert!(status.modified.is_empty() && status.untracked.is_empty());
}

#[test]
fn not_a_work_tree() {
    let dir = tempfile::tempdir().unwrap();
    // Make sure the temporary directory is not itself inside some repository.
    let probe = std::process::Command::new("git")
        .args(["-C", dir.path().to_str().unwrap(), "rev-parse", "--git-dir"])
        .output()
        .unwrap();
    if probe.status.success() {
        eprintln!("skipping: the temporary directory is inside a git repository");
        return;
    }
    assert_eq!(worktree_status(dir.path()).unwrap(), None);

    let origin = Origin::new();
    // A bare repository and the inside of .git have no work tree.
    assert_eq!(worktree_status(&origin.bare).unwrap(), None);
    assert_eq!(worktree_status(&origin.work.join(".git")).unwrap(), None);
    // A path that does not exist is an error, not "no repository".
    assert!(worktree_status(Path::new("/no/such/dir")).is_err());
}
