//! What the Debian package is made of, checked without building or installing it (CI's
//! `.ci/package` does that as root): `sluice generate`'s man pages and completions from the
//! real binary, the default `/etc/sluice/sluice.toml` (`dist/sluice.toml`), and the unit's
//! `Documentation=` and config path against `[package.metadata.deb]`'s assets.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{sluice_bin, tool};

/// The repository's root (the workspace).
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `[package.metadata.deb]` assets of crates/sluice: (source, destination) pairs.
fn deb_assets() -> Vec<(String, String)> {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    let manifest: toml::Value = toml::from_str(&text).unwrap();
    let assets = manifest["package"]["metadata"]["deb"]["assets"]
        .as_array()
        .expect("[package.metadata.deb] assets");
    assets
        .iter()
        .map(|a| {
            let a = a.as_array().unwrap();
            (
                a[0].as_str().unwrap().to_string(),
                a[1].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// `sluice generate` writes every page and completion it lists; the pages render without
/// warnings, the bash completion parses and registers for `sluice`; `--help` hides the command.
#[test]
fn generate_writes_pages_and_completions_that_work() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(sluice_bin())
        .args(["generate", "--out-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let listed: Vec<PathBuf> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(PathBuf::from)
        .collect();
    for name in [
        "man/sluice.1",
        "man/sluice-run.1",
        "man/sluice-check.1",
        "man/sluice-reload.1",
        "man/sluice-upgrade.1",
        "man/sluice-ctl.1",
        "completions/sluice.bash",
        "completions/_sluice",
        "completions/sluice.fish",
    ] {
        let p = dir.path().join(name);
        assert!(listed.contains(&p), "{name} not listed in {listed:?}");
        assert!(std::fs::metadata(&p).unwrap().len() > 0, "{name} is empty");
    }

    if let Some(man) = tool("man", &["man"]) {
        for page in listed
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "1"))
        {
            let out = Command::new(&man)
                .args(["--warnings", "-l"])
                .arg(page)
                .env("MANWIDTH", "80")
                .env("MANPAGER", "cat")
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{}: {out:?}", page.display());
            assert!(
                out.stderr.is_empty(),
                "{}: {}",
                page.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(text.contains("sluice"), "{}: {text}", page.display());
        }
    }

    let bash = dir.path().join("completions/sluice.bash");
    let out = Command::new("bash")
        .arg("-c")
        .arg("set -e; source \"$1\"; complete -p sluice")
        .arg("bash")
        .arg(&bash)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(said.contains("-F _sluice sluice"), "{said}");

    let help = Command::new(sluice_bin()).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("check"), "{help}");
    assert!(
        !help.contains("generate"),
        "--help shows the hidden command:\n{help}"
    );
}

/// The default config the package installs passes `sluice check` and listens on loopback only.
#[test]
fn the_default_config_is_accepted_and_loopback_only() {
    let path = repo().join("dist/sluice.toml");
    let out = Command::new(sluice_bin())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let cfg: toml::Value = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut binds: Vec<&str> = vec![cfg["admin"]["bind"].as_str().unwrap()];
    for f in cfg["frontend"].as_array().unwrap() {
        binds.extend(
            f["bind"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b.as_str().unwrap()),
        );
    }
    for b in binds {
        assert!(b.starts_with("127.0.0.1:"), "{b} is not loopback");
    }
}

/// What the unit names (its config, its `Documentation=`) is what the package installs.
#[test]
fn the_unit_names_what_the_package_installs() {
    let unit = std::fs::read_to_string(repo().join("dist/sluice.service")).unwrap();
    let assets = deb_assets();
    let installs = |src_end: &str, dest: &str| {
        assets
            .iter()
            .any(|(s, d)| s.ends_with(src_end) && d == dest)
    };
    assert!(
        installs("dist/sluice.toml", "etc/sluice/sluice.toml"),
        "{assets:?}"
    );
    assert!(unit.contains("--config /etc/sluice/sluice.toml"), "{unit}");
    let docs = unit
        .lines()
        .find_map(|l| l.strip_prefix("Documentation="))
        .expect("Documentation=");
    let mut seen = 0;
    for doc in docs.split_whitespace() {
        if let Some(page) = doc.strip_prefix("man:") {
            // man:sluice(1): generate writes man/sluice.1, the assets put man/*.1.gz in man1.
            assert_eq!(page, "sluice(1)", "{doc}");
            assert!(
                installs("pkg/man/*.1.gz", "usr/share/man/man1/"),
                "{assets:?}"
            );
            seen += 1;
        } else if let Some(file) = doc.strip_prefix("file:///usr/share/doc/sluice/") {
            assert!(
                installs(&format!("/{file}"), "usr/share/doc/sluice/"),
                "{doc}: {assets:?}"
            );
            seen += 1;
        } else {
            panic!("Documentation={doc}: not something the package installs");
        }
    }
    assert_eq!(seen, 2, "{docs}");
}
