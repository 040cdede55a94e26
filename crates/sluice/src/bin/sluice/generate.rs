//! `sluice generate --out-dir DIR` (hidden): writes the man pages (clap_mangen: `sluice.1` and
//! one page per visible subcommand) and the bash, zsh and fish completions (clap_complete),
//! all from the `cli::Cli` definitions, so they cannot drift from the binary. Packaging
//! (`dist/package`) runs it; it does not compress or install anything.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;

/// The flags of `sluice generate`.
#[derive(Debug, Clone, clap::Args)]
pub struct GenerateOpts {
    /// Directory to write `man/*.1` and `completions/{sluice.bash,_sluice,sluice.fish}` into
    /// (created if missing; existing files are replaced).
    #[arg(long)]
    pub out_dir: PathBuf,
}

/// The completion files: shell and file name inside `completions/`.
pub const COMPLETIONS: [(Shell, &str); 3] = [
    (Shell::Bash, "sluice.bash"),
    (Shell::Zsh, "_sluice"),
    (Shell::Fish, "sluice.fish"),
];

/// Sections appended to the top-level page: where the package puts things, and what to read.
const TOP_PAGE_EXTRA: &str = r#".SH FILES
.TP
\fI/etc/sluice/sluice.toml\fR
The configuration the systemd unit runs (\fBsluice check \-\-config /etc/sluice/sluice.toml\fR
validates it).
.TP
\fI/usr/lib/systemd/system/sluice.service\fR
The systemd unit (installed disabled): \fBsystemctl reload sluice\fR runs \fBsluice reload\fR,
which fails with the reason when the running process refuses the new file.
.TP
\fI/usr/share/doc/sluice/\fR
README.md, CONFIG.md (every configuration key), OPERATIONS.md (reload, signals, systemd,
admin), METRICS.md, CHANGELOG.md.
.SH SIGNALS
SIGHUP reloads the configuration (\fBsluice reload\fR does the same over the control socket
and reports the outcome); SIGTERM and SIGINT stop accepting and drain for
\fBglobal.grace\fR; SIGQUIT exits at once; SIGUSR1 reopens the log files. OPERATIONS.md
has the full table.
.SH SEE ALSO
\fBsluice\-run\fR(1), \fBsluice\-check\fR(1), \fBsluice\-reload\fR(1), \fBsluice\-upgrade\fR(1), \fBsystemctl\fR(1)
"#;

/// Writes every man page and completion file under `out`; returns the paths written.
pub fn generate(out: &Path) -> io::Result<Vec<PathBuf>> {
    let man_dir = out.join("man");
    let comp_dir = out.join("completions");
    std::fs::create_dir_all(&man_dir)?;
    std::fs::create_dir_all(&comp_dir)?;
    let mut written = Vec::new();

    let cmd = Cli::command().disable_help_subcommand(true);
    // One page per visible subcommand (sluice-run.1, ...), then the top page again with the
    // FILES/SIGNALS/SEE ALSO sections added.
    clap_mangen::generate_to(cmd.clone(), &man_dir)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        written.push(man_dir.join(format!("sluice-{}.1", sub.get_name())));
    }
    let top = man_dir.join("sluice.1");
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut page)?;
    page.extend_from_slice(TOP_PAGE_EXTRA.as_bytes());
    std::fs::write(&top, page)?;
    written.push(top);

    for (shell, name) in COMPLETIONS {
        let path = comp_dir.join(name);
        let mut file = std::fs::File::create(&path)?;
        let mut cmd = without_hidden(Cli::command());
        clap_complete::generate(shell, &mut cmd, "sluice", &mut file);
        file.flush()?;
        written.push(path);
    }
    for p in &written {
        if !p.is_file() {
            return Err(io::Error::other(format!("{} was not written", p.display())));
        }
    }
    Ok(written)
}

/// `cmd` rebuilt without its hidden subcommands (clap_complete would offer them; clap has no
/// way to remove a subcommand, so the top level is copied: name, version, about, arguments).
fn without_hidden(cmd: clap::Command) -> clap::Command {
    let mut out = clap::Command::new("sluice")
        .version(env!("CARGO_PKG_VERSION"))
        .subcommand_required(cmd.is_subcommand_required_set())
        .args(cmd.get_arguments().cloned())
        .subcommands(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    if let Some(about) = cmd.get_about() {
        out = out.about(about.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_pages_for_the_visible_commands_and_three_completions() {
        let dir = tempfile::tempdir().unwrap();
        let written = generate(dir.path()).unwrap();
        let man = dir.path().join("man");
        let top = std::fs::read_to_string(man.join("sluice.1")).unwrap();
        assert!(top.starts_with(".ie \\n(.g .ds Aq"), "{top}");
        assert!(top.contains(".SH FILES"), "{top}");
        assert!(top.contains("/etc/sluice/sluice.toml"), "{top}");
        for sub in ["run", "check", "reload", "upgrade"] {
            let page = std::fs::read_to_string(man.join(format!("sluice-{sub}.1"))).unwrap();
            assert!(page.contains("\\-\\-config"), "sluice-{sub}.1: {page}");
        }
        // Hidden commands get no page and no completion.
        assert!(!man.join("sluice-generate.1").exists());
        let bash = std::fs::read_to_string(dir.path().join("completions/sluice.bash")).unwrap();
        assert!(bash.contains("complete -F _sluice"), "{bash}");
        assert!(bash.contains("--config"), "{bash}");
        let zsh = std::fs::read_to_string(dir.path().join("completions/_sluice")).unwrap();
        assert!(zsh.starts_with("#compdef sluice"), "{zsh}");
        let fish = std::fs::read_to_string(dir.path().join("completions/sluice.fish")).unwrap();
        assert!(fish.contains("complete -c sluice"), "{fish}");
        for (text, shell) in [(&bash, "bash"), (&zsh, "zsh"), (&fish, "fish")] {
            for hidden in ["out-dir", "Write the man pages", "generate:", " generate "] {
                assert!(!text.contains(hidden), "{shell} offers `generate`:\n{text}");
            }
            assert!(
                text.contains("log-format"),
                "{shell} lacks the global flag:\n{text}"
            );
            assert!(
                text.contains("print-config"),
                "{shell} lacks demo's flags:\n{text}"
            );
        }
        assert!(written.len() >= 7, "{written:?}");
    }
}
