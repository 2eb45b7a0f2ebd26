//! Terminal output: step lines with elapsed time, notes, warnings, errors and
//! download progress bars.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

static VERBOSE: AtomicBool = AtomicBool::new(false);

pub fn set_verbose(on: bool) {
    VERBOSE.store(on, Ordering::Relaxed);
}

/// Whether `--verbose` asked for the tools' own output on the terminal.
pub fn verbose() -> bool {
    VERBOSE.load(Ordering::Relaxed)
}

fn fancy() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("CI").is_none()
}

/// Formats a duration the way the step lines show it: `850ms`, `12.3s`, `3m07s`.
pub fn human(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 1.0 {
        format!("{}ms", d.as_millis())
    } else if secs < 60.0 {
        format!("{secs:.1}s")
    } else {
        let s = d.as_secs();
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

/// One step of a task: prints a line when it starts and one with the elapsed
/// time when it ends. While it runs on a terminal, a spinner shows the time.
pub struct Step {
    what: String,
    start: Instant,
    spinner: Option<ProgressBar>,
    finished: bool,
}

impl Step {
    pub fn start(what: impl Into<String>) -> Step {
        let what = what.into();
        eprintln!("==> {what}");
        let spinner = (fancy() && !verbose()).then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(ProgressStyle::with_template("    {spinner} {elapsed}").expect("valid template"));
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Step { what, start: Instant::now(), spinner, finished: false }
    }

    /// Ends the step successfully, with an optional short remark.
    pub fn done(mut self, remark: &str) -> Duration {
        self.finish(if remark.is_empty() { "done".to_string() } else { remark.to_string() })
    }

    fn finish(&mut self, how: String) -> Duration {
        self.finished = true;
        if let Some(bar) = self.spinner.take() {
            bar.finish_and_clear();
        }
        let elapsed = self.start.elapsed();
        eprintln!("    {how} ({})", human(elapsed));
        elapsed
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        if !self.finished {
            let what = self.what.clone();
            self.finish(format!("failed: {what}"));
        }
    }
}

/// A plain progress line that is not a step.
pub fn note(msg: impl AsRef<str>) {
    eprintln!("    {}", msg.as_ref());
}

pub fn warn(msg: impl AsRef<str>) {
    eprintln!("warning: {}", msg.as_ref());
}

/// Prints an error with its chain of causes, one per line.
pub fn error(err: &anyhow::Error) {
    eprintln!("error: {err}");
    for cause in err.chain().skip(1) {
        eprintln!("\ncaused by: {cause}");
    }
}

/// A byte progress bar for downloads (hidden when not on a terminal, where a
/// start and an end line are printed instead).
pub fn download_bar(len: Option<u64>) -> ProgressBar {
    if !fancy() {
        return ProgressBar::hidden();
    }
    let bar = match len {
        Some(len) => ProgressBar::new(len),
        None => ProgressBar::new_spinner(),
    };
    bar.set_style(
        ProgressStyle::with_template("    [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar
}

#[cfg(test)]
mod tests {
    use super::human;
    use std::time::Duration;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human(Duration::from_millis(850)), "850ms");
        assert_eq!(human(Duration::from_millis(12_340)), "12.3s");
        assert_eq!(human(Duration::from_secs(187)), "3m07s");
    }
}
