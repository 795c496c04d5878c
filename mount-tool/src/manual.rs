//! `objfs completions SHELL` and `objfs man`: shell completion and the manual page, both
//! generated from the same clap definitions as the command line itself, so they cannot drift.

use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::cli::{Cli, CompletionsArgs, ManArgs};

/// Prints the completion script of a shell.
pub fn completions(a: &CompletionsArgs) -> Result<()> {
    let mut cmd = Cli::command();
    clap_complete::generate(a.shell, &mut cmd, "objfs", &mut std::io::stdout());
    Ok(())
}

/// Prints objfs.1, or writes objfs.1 and objfs-SUBCOMMAND.1 into a directory.
pub fn man(a: &ManArgs) -> Result<()> {
    let cmd = Cli::command();
    match &a.dir {
        None => clap_mangen::Man::new(cmd)
            .render(&mut std::io::stdout())
            .context("cannot write the manual page"),
        Some(dir) => write_pages(cmd, dir),
    }
}

fn write_pages(cmd: clap::Command, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut pages = vec![("objfs".to_string(), cmd.clone())];
    for sub in cmd.get_subcommands() {
        let name = format!("objfs-{}", sub.get_name());
        let bin = format!("objfs {}", sub.get_name());
        pages.push((name, sub.clone().bin_name(bin)));
    }
    for (name, page) in pages {
        let path = dir.join(format!("{name}.1"));
        let mut buf = Vec::new();
        clap_mangen::Man::new(page)
            .title(name.to_uppercase())
            .render(&mut buf)
            .with_context(|| format!("cannot render {name}.1"))?;
        std::fs::write(&path, buf).with_context(|| format!("cannot write {}", path.display()))?;
        println!("{}", path.display());
    }
    Ok(())
}
