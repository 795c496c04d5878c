//! Feedback while a long job runs (place, scrub, gc, disk remove, restore): an indicatif bar
//! with bytes or items done, rate and ETA when stderr is a terminal; a plain line every few seconds when
//! it is not (a log, a pipe); nothing with `--quiet`. Progress always goes to stderr, so
//! stdout carries only the report (or its JSON).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::ops::JobProgress;
use crate::render::run_progress_text;

/// How often a plain progress line is printed.
const PLAIN_EVERY: Duration = Duration::from_secs(2);

enum Mode {
    Quiet,
    Plain { last: Option<Instant> },
    Bar(Option<ProgressBar>),
}

/// The progress display of one command.
pub struct Feedback {
    mode: Mode,
}

impl Feedback {
    /// A display for a command: quiet, a bar on a terminal, plain lines otherwise.
    pub fn new(quiet: bool) -> Feedback {
        let mode = if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Bar(None)
        } else {
            Mode::Plain { last: None }
        };
        Feedback { mode }
    }

    /// Shows how far a job is.
    pub fn update(&mut self, p: &JobProgress) {
        match &mut self.mode {
            Mode::Quiet => {}
            Mode::Plain { last } => {
                let due = last.is_none_or(|t| t.elapsed() >= PLAIN_EVERY);
                if due {
                    eprintln!("{}: {}", p.job, run_progress_text(&p.job, &p.run));
                    *last = Some(Instant::now());
                }
            }
            Mode::Bar(bar) => {
                let by_bytes = p.run.bytes_total > 0;
                let (pos, len) = if by_bytes {
                    (p.run.bytes_done, p.run.bytes_total)
                } else {
                    (p.run.items_done, p.run.items_total.max(1))
                };
                let b = bar.get_or_insert_with(|| new_bar(&p.job, by_bytes, len.max(pos)));
                if pos < b.position() {
                    // A new phase (restore: planning, then executing): rate and ETA anew.
                    b.reset();
                }
                b.set_length(len.max(pos));
                b.set_position(pos);
                let items = if p.run.items_total > 0 {
                    format!("{}/{}", p.run.items_done, p.run.items_total)
                } else {
                    p.run.items_done.to_string()
                };
                b.set_message(if p.note.is_empty() {
                    items
                } else {
                    format!("{items} {}", p.note)
                });
            }
        }
    }

    /// Clears the bar (the report follows on stdout).
    pub fn finish(&mut self) {
        if let Mode::Bar(Some(b)) = &self.mode {
            b.finish_and_clear();
        }
    }
}

impl Drop for Feedback {
    fn drop(&mut self) {
        self.finish();
    }
}

fn new_bar(job: &str, by_bytes: bool, len: u64) -> ProgressBar {
    let template = if by_bytes {
        "{prefix} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}"
    } else {
        "{prefix} [{bar:30}] {pos}/{len} {rate} ETA {eta} {msg}"
    };
    let style = ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key(
            "rate",
            |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.0}/s", s.per_sec());
            },
        )
        .progress_chars("=> ");
    let b = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    b.set_style(style);
    b.set_prefix(job.to_string());
    b.enable_steady_tick(Duration::from_millis(250));
    b
}
