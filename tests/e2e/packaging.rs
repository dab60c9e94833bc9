//! What a packager and an operator see of the build: `--version` names the commit.

use std::process::Command;

/// `gatewayworker --version` prints the crate version and the git revision the binary was
/// built from (build.rs), the one `git rev-parse --short=12 HEAD` gives for this tree.
#[test]
fn version_names_the_git_revision() {
    let out = Command::new(env!("CARGO_BIN_EXE_gatewayworker"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let line = String::from_utf8(out.stdout).unwrap();
    let expected_rev = std::env::var("GATEWAYWORKER_GIT_REV")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .or_else(|| {
            let git = Command::new("git")
                .args(["-C", env!("CARGO_MANIFEST_DIR")])
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()?;
            git.status
                .success()
                .then(|| String::from_utf8_lossy(&git.stdout).trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    assert_eq!(
        line,
        format!(
            "gatewayworker {} (git {expected_rev})\n",
            env!("CARGO_PKG_VERSION")
        )
    );
    // `-V` is the same.
    let short = Command::new(env!("CARGO_BIN_EXE_gatewayworker"))
        .arg("-V")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(short.stdout).unwrap(), line);
}
