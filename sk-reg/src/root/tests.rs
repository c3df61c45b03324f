// Tests may unwrap: a panic is the failure report.

use std::fs;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

/// A uniquely named directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "sk-reg-test-{}-{}-{}",
            std::process::id(),
            nanos,
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&dir).unwrap();
        TempDir(fs::canonicalize(&dir).unwrap())
    }

    fn dir(&self, rel: &str) -> PathBuf {
        let path = self.0.join(rel);
        fs::create_dir_all(&path).unwrap();
        path
    }

    fn file(&self, rel: &str) -> PathBuf {
        let path = self.0.join(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).unwrap();
        }
        fs::write(&path, b"").unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn higher_priority_marker_wins_over_a_nearer_one() {
    let tmp = TempDir::new();
    tmp.dir("ws/.git");
    tmp.file("ws/member/Cargo.toml");
    let start = tmp.dir("ws/member/src/deep");

    let root = SkRoot::detect_from(&start).unwrap();
    assert_eq!(root.path(), tmp.0.join("ws"));
    assert_eq!(root.marker(), Some(".git"));

    tmp.file("ws/member/src/.skroot");
    let root = SkRoot::detect_from(&start).unwrap();
    assert_eq!(root.path(), tmp.0.join("ws/member/src"));
    assert_eq!(root.marker(), Some(".skroot"));
}

#[test]
fn nearest_ancestor_with_the_marker_is_taken() {
    let tmp = TempDir::new();
    tmp.file("outer/Cargo.toml");
    tmp.file("outer/inner/Cargo.toml");
    let start = tmp.dir("outer/inner/a/b");
    let found = SkRoot::builder()
        .markers(["Cargo.toml"])
        .start(&start)
        .build()
        .unwrap();
    assert_eq!(found.path(), tmp.0.join("outer/inner"));
    // The start directory itself counts.
    let found = SkRoot::builder()
        .markers(["Cargo.toml"])
        .start(tmp.0.join("outer"))
        .build()
        .unwrap();
    assert_eq!(found.path(), tmp.0.join("outer"));
}

#[test]
fn custom_markers_and_not_found() {
    let tmp = TempDir::new();
    let start = tmp.dir("x/y");
    let marker = ".sk-reg-test-marker-that-exists-nowhere";
    let err = SkRoot::builder()
        .markers([marker])
        .start(&start)
        .build()
        .unwrap_err();
    match &err {
        RootError::NotFound { start: s, markers } => {
            assert_eq!(s, &start);
            assert_eq!(markers, &[marker.to_owned()]);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        format!(
            "no project root found from {}: none of {marker} exists there or in any ancestor",
            start.display()
        )
    );

    tmp.file(&format!("x/{marker}"));
    let found = SkRoot::builder()
        .markers([marker])
        .start(&start)
        .build()
        .unwrap();
    assert_eq!(found.path(), tmp.0.join("x"));

    let none: [&str; 0] = [];
    assert!(matches!(
        SkRoot::builder().markers(none).start(&start).build(),
        Err(RootError::NoMarkers)
    ));
}

#[test]
fn missing_start_and_non_directory_root() {
    let tmp = TempDir::new();
    let missing = tmp.0.join("missing");
    match SkRoot::detect_from(&missing).unwrap_err() {
        RootError::Io { path, source } => {
            assert_eq!(path, missing);
            assert_eq!(source.kind(), io::ErrorKind::NotFound);
        }
        other => panic!("unexpected {other:?}"),
    }
    let file = tmp.file("plain.txt");
    let err = SkRoot::at(&file).unwrap_err();
    assert!(matches!(&err, RootError::NotADirectory { path } if path == &file));
    assert_eq!(
        err.to_string(),
        format!("{} is not a directory", file.display())
    );
    let root = SkRoot::at(&tmp.0).unwrap();
    assert_eq!(root.path(), tmp.0);
    assert_eq!(root.marker(), None);
}

#[test]
fn relative_paths() {
    let tmp = TempDir::new();
    let root = SkRoot::at(tmp.dir("proj")).unwrap();
    tmp.file("proj/src/main.rs");
    assert_eq!(
        root.relative(tmp.0.join("proj/src/main.rs")).unwrap(),
        Path::new("src/main.rs")
    );
    // Relative inputs are relative to the root, not the working directory.
    assert_eq!(
        root.relative("src/main.rs").unwrap(),
        Path::new("src/main.rs")
    );
    assert_eq!(
        root.relative("src/../src/./main.rs").unwrap(),
        Path::new("src/main.rs")
    );
    // Paths that do not exist yet.
    assert_eq!(
        root.relative("new/dir/file.txt").unwrap(),
        Path::new("new/dir/file.txt")
    );
    assert_eq!(root.relative("new/../other").unwrap(), Path::new("other"));
    // The root itself.
    assert_eq!(root.relative(root.path()).unwrap(), Path::new(""));
    assert!(root.contains("src"));
}

#[test]
fn relative_rejects_paths_outside() {
    let tmp = TempDir::new();
    let root = SkRoot::at(tmp.dir("proj")).unwrap();
    let sibling = tmp.dir("sibling");
    let err = root.relative(&sibling).unwrap_err();
    match &err {
        RootError::OutsideRoot { path, root: r } => {
            assert_eq!(path, &sibling);
            assert_eq!(r, root.path());
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        format!(
            "{} is outside the project root {}",
            sibling.display(),
            root.path().display()
        )
    );
    assert!(root.relative("../sibling").is_err());
    assert!(root.relative("missing/../../sibling").is_err());
    // A prefix of the name is not containment.
    let lookalike = tmp.dir("proj-other");
    assert!(!root.contains(&lookalike));
}

#[cfg(unix)]
#[test]
fn relative_follows_symlinks_in_existing_parts() {
    let tmp = TempDir::new();
    let root = SkRoot::at(tmp.dir("proj")).unwrap();
    let outside = tmp.dir("outside");
    std::os::unix::fs::symlink(&outside, tmp.0.join("proj/link")).unwrap();
    // `proj/link/x` really lives outside the root.
    assert!(!root.contains("link/x"));
    // A link into the root is inside.
    std::os::unix::fs::symlink(root.path().join("src"), tmp.0.join("alias")).unwrap();
    tmp.dir("proj/src");
    assert_eq!(
        root.relative(tmp.0.join("alias/lib.rs")).unwrap(),
        Path::new("src/lib.rs")
    );
}

#[test]
fn join_stays_inside() {
    let tmp = TempDir::new();
    let root = SkRoot::at(tmp.dir("proj")).unwrap();
    assert_eq!(root.join("a/b.txt").unwrap(), root.path().join("a/b.txt"));
    assert_eq!(root.join("a/../b/./c").unwrap(), root.path().join("b/c"));
    assert_eq!(root.join("").unwrap(), root.path());
    assert_eq!(
        root.join(root.path().join("x/../y")).unwrap(),
        root.path().join("y")
    );

    let err = root.join("a/../../etc").unwrap_err();
    match &err {
        RootError::Escapes { path, root: r } => {
            assert_eq!(path, Path::new("a/../../etc"));
            assert_eq!(r, root.path());
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        format!(
            "a/../../etc escapes the project root {}",
            root.path().display()
        )
    );
    assert!(matches!(
        root.join("/etc/passwd"),
        Err(RootError::Escapes { .. })
    ));
    assert!(matches!(
        root.join(root.path().join("../x")),
        Err(RootError::Escapes { .. })
    ));
}

#[test]
fn scoped_registries() {
    let tmp = TempDir::new();
    let a = SkRoot::at(tmp.dir("a")).unwrap();
    let b = SkRoot::at(tmp.dir("b")).unwrap();
    struct Item(u8);
    a.registry::<Item>()
        .register(crate::Layer::External, "one", Item(1))
        .unwrap();
    assert_eq!(a.registry::<Item>().require("one").unwrap().0, 1);
    assert!(!b.registry::<Item>().contains("one"));
    assert!(!crate::registry::<Item>().contains("one"));
    // A second handle on the same root shares the registry.
    let same = SkRoot::at(tmp.0.join("a/../a")).unwrap();
    assert!(std::ptr::eq(a.registry::<Item>(), same.registry::<Item>()));
}

#[test]
fn current_root_is_stable() {
    let current = SkRoot::current().unwrap();
    assert!(current.contains(env!("CARGO_MANIFEST_DIR")));
    assert!(std::ptr::eq(current, SkRoot::current().unwrap()));
    // Setting the same root again is fine; another is refused.
    assert!(SkRoot::set_current(current.clone()).is_ok());
    let tmp = TempDir::new();
    let other = SkRoot::at(&tmp.0).unwrap();
    let err = SkRoot::set_current(other).unwrap_err();
    assert!(matches!(&err, RootError::AlreadySet { current: c } if c == current.path()));
}
