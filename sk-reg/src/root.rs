//! `SkRoot`: finding the project root and paths relative to it.

use std::fmt;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use crate::error::RootError;
use crate::registry::Registry;
use crate::type_map::root_registry;

/// The root directory of a project.
///
/// A root is found by walking up from a start directory looking for marker
/// files ([`SkRoot::DEFAULT_MARKERS`]: `.skroot`, then `.git`, then
/// `Cargo.toml`). Markers are tried in priority order; for each, the
/// nearest ancestor (the start directory included) that contains it is
/// taken, and the first marker found anywhere wins. So a `.git` at the top
/// of a workspace beats the `Cargo.toml` of the member crate you start in,
/// and an explicit `.skroot` file beats both.
///
/// The path is canonical (absolute, symlinks resolved). A root gives
/// root-relative paths ([`relative`](SkRoot::relative)), safe joins
/// ([`join`](SkRoot::join)) and registries scoped to it
/// ([`registry`](SkRoot::registry)).
///
/// # Examples
///
/// ```
/// use sk_reg::SkRoot;
///
/// // Doc tests run inside this repository, which has markers above them.
/// let root = SkRoot::detect()?;
/// let config = root.join("config/app.toml")?;
/// assert!(config.starts_with(root.path()));
/// assert_eq!(root.relative(&config)?, std::path::Path::new("config/app.toml"));
/// assert!(root.join("../elsewhere").is_err());
/// # Ok::<(), sk_reg::RootError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SkRoot {
    path: PathBuf,
    marker: Option<String>,
}

static CURRENT: OnceLock<SkRoot> = OnceLock::new();

impl SkRoot {
    /// The markers [`detect`](SkRoot::detect) looks for, highest priority
    /// first.
    pub const DEFAULT_MARKERS: [&'static str; 3] = [".skroot", ".git", "Cargo.toml"];

    /// Finds the root from the current working directory with the
    /// [default markers](SkRoot::DEFAULT_MARKERS).
    ///
    /// # Errors
    ///
    /// [`RootError::Io`] when the working directory cannot be read,
    /// [`RootError::NotFound`] when no marker exists in it or any ancestor.
    pub fn detect() -> Result<Self, RootError> {
        SkRoot::builder().build()
    }

    /// Finds the root from `start` with the
    /// [default markers](SkRoot::DEFAULT_MARKERS).
    ///
    /// # Errors
    ///
    /// [`RootError::Io`] when `start` cannot be read (for example, it does
    /// not exist), [`RootError::NotFound`] when no marker is found.
    pub fn detect_from(start: impl AsRef<Path>) -> Result<Self, RootError> {
        SkRoot::builder().start(start.as_ref()).build()
    }

    /// Uses `path` as the root, without looking for markers.
    ///
    /// # Errors
    ///
    /// [`RootError::Io`] when `path` cannot be read, and
    /// [`RootError::NotADirectory`] when it is not a directory.
    pub fn at(path: impl AsRef<Path>) -> Result<Self, RootError> {
        let path = canonical_dir(path.as_ref())?;
        Ok(SkRoot { path, marker: None })
    }

    /// A builder to choose the markers and the start directory.
    ///
    /// # Examples
    ///
    /// ```
    /// use sk_reg::SkRoot;
    ///
    /// let crate_dir = SkRoot::builder()
    ///     .markers(["Cargo.toml"])
    ///     .start(env!("CARGO_MANIFEST_DIR"))
    ///     .build()?;
    /// assert_eq!(crate_dir.marker(), Some("Cargo.toml"));
    /// assert_eq!(crate_dir.path(), std::fs::canonicalize(env!("CARGO_MANIFEST_DIR")).unwrap());
    /// # Ok::<(), sk_reg::RootError>(())
    /// ```
    pub fn builder() -> SkRootBuilder {
        SkRootBuilder::default()
    }

    /// The root of this process: detected from the working directory on
    /// first success (or set with [`set_current`](SkRoot::set_current)),
    /// then fixed for the life of the process.
    ///
    /// A failed detection is not remembered, so a later call can succeed
    /// once a marker exists.
    ///
    /// # Errors
    ///
    /// As [`detect`](SkRoot::detect), while no root is set yet.
    pub fn current() -> Result<&'static SkRoot, RootError> {
        if let Some(root) = CURRENT.get() {
            return Ok(root);
        }
        let detected = SkRoot::detect()?;
        // A racing thread may have set it first; both detected the same
        // working directory, and the first one wins either way.
        Ok(CURRENT.get_or_init(|| detected))
    }

    /// The root of this process if it is fixed already (set, or detected
    /// by an earlier [`current`](SkRoot::current)); never detects.
    pub fn current_if_set() -> Option<&'static SkRoot> {
        CURRENT.get()
    }

    /// Fixes the root of this process before its first use (for example,
    /// a worker process adopting the root its parent passed to it).
    ///
    /// Setting the root that is already current is not an error.
    ///
    /// # Errors
    ///
    /// [`RootError::AlreadySet`] when another root is already current.
    pub fn set_current(root: SkRoot) -> Result<&'static SkRoot, RootError> {
        let current = CURRENT.get_or_init(|| root.clone());
        if current.path == root.path {
            Ok(current)
        } else {
            Err(RootError::AlreadySet {
                current: current.path.clone(),
            })
        }
    }

    /// The canonical path of the root.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The marker that identified the root (`None` for [`SkRoot::at`]).
    pub fn marker(&self) -> Option<&str> {
        self.marker.as_deref()
    }

    /// The path of `path` relative to the root.
    ///
    /// A relative `path` is taken relative to the root (not to the working
    /// directory). The existing part of the path is canonicalized (so
    /// symlinks and `..` are resolved as the operating system would); the
    /// part that does not exist yet is normalized lexically. The root itself
    /// gives an empty path.
    ///
    /// # Errors
    ///
    /// [`RootError::OutsideRoot`] when the path does not lie in or under
    /// the root.
    pub fn relative(&self, path: impl AsRef<Path>) -> Result<PathBuf, RootError> {
        let path = path.as_ref();
        let absolute = if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.path.join(path)
        };
        let resolved = resolve(&absolute);
        match resolved.strip_prefix(&self.path) {
            Ok(rel) => Ok(rel.to_path_buf()),
            Err(_) => Err(RootError::OutsideRoot {
                path: path.to_path_buf(),
                root: self.path.clone(),
            }),
        }
    }

    /// Whether `path` lies in or under the root (see
    /// [`relative`](SkRoot::relative)).
    pub fn contains(&self, path: impl AsRef<Path>) -> bool {
        self.relative(path).is_ok()
    }

    /// The absolute path of `rel` under the root.
    ///
    /// `.` and `..` are resolved lexically; an absolute `rel` is accepted
    /// when it lies under the root. Symlinks are not followed, so a link
    /// inside the root that points outside it is not detected here (use
    /// [`relative`](SkRoot::relative) on the result to check that).
    ///
    /// # Errors
    ///
    /// [`RootError::Escapes`] when `rel` climbs above the root with `..`,
    /// or is absolute and outside the root.
    pub fn join(&self, rel: impl AsRef<Path>) -> Result<PathBuf, RootError> {
        let rel = rel.as_ref();
        let escapes = || RootError::Escapes {
            path: rel.to_path_buf(),
            root: self.path.clone(),
        };
        if rel.is_absolute() {
            let normalized = normalize(rel);
            return if normalized.starts_with(&self.path) {
                Ok(normalized)
            } else {
                Err(escapes())
            };
        }
        let mut out = self.path.clone();
        let mut depth = 0usize;
        for component in rel.components() {
            match component {
                Component::Normal(part) => {
                    out.push(part);
                    depth += 1;
                }
                Component::CurDir => {}
                Component::ParentDir => {
                    if depth == 0 {
                        return Err(escapes());
                    }
                    out.pop();
                    depth -= 1;
                }
                // A drive prefix without a root (`C:foo` on Windows) is not
                // under this root.
                Component::RootDir | Component::Prefix(_) => return Err(escapes()),
            }
        }
        Ok(out)
    }

    /// The registry of `T` scoped to this root.
    ///
    /// Every file in or under a root can reach the registry: every part
    /// of the process that works with the same root (the same canonical
    /// path) gets the same registry, and a different root gets a different
    /// one. Like [`registry`](crate::registry), each registry is created on
    /// first use and leaked; its name is `"<type> in <root>"`.
    ///
    /// # Examples
    ///
    /// ```
    /// use sk_reg::{Layer, SkRoot};
    ///
    /// let root = SkRoot::current()?;
    /// root.registry::<u32>().replace(Layer::Internal, "answer", 42);
    /// assert_eq!(SkRoot::current()?.registry::<u32>().get("answer").as_deref(), Some(&42));
    /// // The process-wide registry of the same type is a different one.
    /// assert!(!sk_reg::registry::<u32>().contains("answer"));
    /// # Ok::<(), sk_reg::RootError>(())
    /// ```
    pub fn registry<T: ?Sized + Send + Sync + 'static>(&self) -> &'static Registry<T> {
        root_registry::<T>(&self.path)
    }
}

impl fmt::Display for SkRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.path.display().fmt(f)
    }
}

impl AsRef<Path> for SkRoot {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

/// Builder for [`SkRoot`] detection: which markers, from where.
#[derive(Clone, Debug, Default)]
pub struct SkRootBuilder {
    markers: Option<Vec<String>>,
    start: Option<PathBuf>,
}

impl SkRootBuilder {
    /// The marker file or directory names, highest priority first
    /// (default: [`SkRoot::DEFAULT_MARKERS`]).
    pub fn markers<I, S>(mut self, markers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.markers = Some(markers.into_iter().map(Into::into).collect());
        self
    }

    /// The directory to start from (default: the working directory). A
    /// relative start is taken relative to the working directory.
    pub fn start(mut self, start: impl Into<PathBuf>) -> Self {
        self.start = Some(start.into());
        self
    }

    /// Walks up from the start directory and returns the root.
    ///
    /// # Errors
    ///
    /// [`RootError::NoMarkers`] when the marker list is empty,
    /// [`RootError::Io`] when the start directory cannot be read, and
    /// [`RootError::NotFound`] when no marker is found.
    pub fn build(self) -> Result<SkRoot, RootError> {
        let markers = self
            .markers
            .unwrap_or_else(|| SkRoot::DEFAULT_MARKERS.map(String::from).to_vec());
        if markers.is_empty() {
            return Err(RootError::NoMarkers);
        }
        let start = match self.start {
            Some(start) => start,
            None => std::env::current_dir().map_err(|source| RootError::Io {
                path: PathBuf::from("."),
                source,
            })?,
        };
        let canonical = canonical_dir(&start)?;
        for marker in &markers {
            for dir in canonical.ancestors() {
                if exists(&dir.join(marker)) {
                    return Ok(SkRoot {
                        path: dir.to_path_buf(),
                        marker: Some(marker.clone()),
                    });
                }
            }
        }
        Err(RootError::NotFound { start, markers })
    }
}

/// Whether `path` exists, counting a dangling symlink as existing (a
/// marker only has to be present, not valid).
fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

fn canonical_dir(path: &Path) -> Result<PathBuf, RootError> {
    let io_err = |source: io::Error| RootError::Io {
        path: path.to_path_buf(),
        source,
    };
    let canonical = std::fs::canonicalize(path).map_err(io_err)?;
    if canonical.is_dir() {
        Ok(canonical)
    } else {
        Err(RootError::NotADirectory {
            path: path.to_path_buf(),
        })
    }
}

/// Canonicalizes the longest existing prefix of the absolute path `path`
/// and applies the remaining components lexically.
fn resolve(path: &Path) -> PathBuf {
    let components: Vec<Component<'_>> = path.components().collect();
    for split in (1..=components.len()).rev() {
        let prefix: PathBuf = components[..split].iter().collect();
        if let Ok(mut base) = std::fs::canonicalize(&prefix) {
            apply(&mut base, &components[split..]);
            return base;
        }
    }
    normalize(path)
}

/// Resolves `.` and `..` without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    let components: Vec<Component<'_>> = path.components().collect();
    apply(&mut out, &components);
    out
}

fn apply(out: &mut PathBuf, components: &[Component<'_>]) {
    for component in components {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
}

#[cfg(test)]
mod tests;
