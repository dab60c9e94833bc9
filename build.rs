//! Sets `GATEWAYWORKER_GIT_REV` for `gatewayworker --version`: the commit the binary was
//! built from, as `git rev-parse --short=12 HEAD` prints it.
//!
//! - Where git or the repository is absent (a tarball build), the revision is `unknown`,
//!   or the value of the environment variable `GATEWAYWORKER_GIT_REV` when it is set
//!   (a packager that knows the revision passes it in).
//! - The script reruns only when HEAD, the branch ref it points to or the packed refs
//!   change (and when this file or that variable change), not on every build. The
//!   revision is the only thing it adds to the binary: no date, no host, no path, so a
//!   build stays reproducible for a given commit. Uncommitted changes are not detected
//!   (that would rerun the script on every edit).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=GATEWAYWORKER_GIT_REV");
    let revision = match std::env::var("GATEWAYWORKER_GIT_REV") {
        Ok(given) if !given.trim().is_empty() => given.trim().to_owned(),
        _ => from_git().unwrap_or_else(|| "unknown".to_owned()),
    };
    println!("cargo:rustc-env=GATEWAYWORKER_GIT_REV={revision}");
}

/// One line of a git command's output, or `None` when git fails or is absent.
fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    let line = text.lines().next()?.trim().to_owned();
    (!line.is_empty()).then_some(line)
}

/// The short revision of HEAD, after telling cargo which files to watch. Paths come from
/// git itself, so a worktree (where `.git` is a file) or a moved git dir work too.
fn from_git() -> Option<String> {
    // Only the repository this crate is the top of: a tarball unpacked inside some other
    // repository must not report that repository's revision.
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR")?);
    let top = git(&["-C", manifest_dir.to_str()?, "rev-parse", "--show-toplevel"])?;
    if PathBuf::from(&top).canonicalize().ok()? != manifest_dir.canonicalize().ok()? {
        return None;
    }
    let dir = manifest_dir.to_str()?;
    // HEAD, the branch's loose ref and packed-refs; a path that does not exist would make
    // cargo rerun the script on every build, so only existing ones. A branch whose ref is
    // only in packed-refs gets its loose file on the next commit, which its folder shows.
    let watch = |path: String, or_parent: bool| {
        let path = manifest_dir.join(path);
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        } else if let Some(parent) = path.parent().filter(|p| or_parent && p.exists()) {
            println!("cargo:rerun-if-changed={}", parent.display());
        }
    };
    watch(git(&["-C", dir, "rev-parse", "--git-path", "HEAD"])?, false);
    if let Some(branch) = git(&["-C", dir, "symbolic-ref", "-q", "HEAD"]) {
        watch(git(&["-C", dir, "rev-parse", "--git-path", &branch])?, true);
    }
    watch(
        git(&["-C", dir, "rev-parse", "--git-path", "packed-refs"])?,
        false,
    );
    git(&["-C", dir, "rev-parse", "--short=12", "HEAD"])
}
