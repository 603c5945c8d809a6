//! Progress of pulls and exports (SPEC §1, §3): on a terminal, one indicatif bar per image
//! being pulled (bytes of all its layers, layers done) and per export (bytes read, rate);
//! when standard error is not a terminal, plain log lines (a start line, a line at most every
//! few seconds while it lasts, an end line); nothing with `-q`.
//!
//! Log records and bars share standard error: [`LogWriter`] is the logger's output and
//! suspends the bars around each record, so lines never tear a bar (and are never swallowed
//! the way `ProgressBar::println` swallows them when bars are hidden).

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often plain mode reports a pull or export that is still running.
const PLAIN_INTERVAL: Duration = Duration::from_secs(5);

/// The bars being drawn, if any, for [`LogWriter`].
static ACTIVE: Mutex<Option<MultiProgress>> = Mutex::new(None);

fn active() -> std::sync::MutexGuard<'static, Option<MultiProgress>> {
    ACTIVE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Standard error for the logger: writes each record with the bars suspended.
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let bars = active().clone();
        match bars {
            Some(m) => m
                .suspend(|| io::stderr().write_all(buf))
                .map(|()| buf.len()),
            None => io::stderr().write_all(buf).map(|()| buf.len()),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

/// How progress is shown.
#[derive(Clone)]
pub struct Progress {
    mode: Mode,
}

#[derive(Clone)]
enum Mode {
    Bars(MultiProgress),
    Plain,
    Quiet,
}

impl Progress {
    /// Bars when standard error is a terminal (indicatif's test: a tty, `TERM` not `dumb`),
    /// plain lines otherwise, nothing when `quiet`.
    pub fn auto(quiet: bool) -> Progress {
        if quiet {
            return Progress::quiet();
        }
        let target = ProgressDrawTarget::stderr_with_hz(8);
        if target.is_hidden() {
            Progress::plain()
        } else {
            let m = MultiProgress::with_draw_target(target);
            *active() = Some(m.clone());
            Progress {
                mode: Mode::Bars(m),
            }
        }
    }

    /// Plain log lines.
    pub fn plain() -> Progress {
        Progress { mode: Mode::Plain }
    }

    /// Nothing at all.
    pub fn quiet() -> Progress {
        Progress { mode: Mode::Quiet }
    }

    /// Bars drawn to `target` (tests draw to a hidden or in-memory target).
    pub fn bars(target: ProgressDrawTarget) -> Progress {
        Progress {
            mode: Mode::Bars(MultiProgress::with_draw_target(target)),
        }
    }

    /// Whether bars are drawn.
    pub fn is_bars(&self) -> bool {
        matches!(self.mode, Mode::Bars(_))
    }

    /// Progress of pulling `image`.
    pub fn pull(&self, image: &str) -> PullProgress {
        let out = self.start(
            "pulling",
            image,
            ProgressBar::new(0),
            "{spinner:.green} pulling {prefix} [{bar:24}] {bytes}/{total_bytes} {msg}",
        );
        PullProgress {
            image: image.to_string(),
            out,
            tally: Tally::default(),
            started: Instant::now(),
            last_line: Instant::now(),
        }
    }

    /// Progress of exporting `image`.
    pub fn export(&self, image: &str) -> ExportProgress {
        let out = self.start(
            "exporting",
            image,
            ProgressBar::no_length(),
            "{spinner:.green} exporting {prefix} {bytes} ({bytes_per_sec})",
        );
        ExportProgress {
            image: image.to_string(),
            out,
            bytes: 0,
            started: Instant::now(),
            last_line: Instant::now(),
            done: false,
        }
    }
}

impl Progress {
    /// A bar on a terminal, a start line otherwise, nothing when quiet.
    fn start(&self, verb: &str, image: &str, bar: ProgressBar, template: &str) -> Out {
        match &self.mode {
            Mode::Bars(m) => {
                let bar = m.add(bar);
                bar.set_style(style(template));
                bar.set_prefix(image.to_string());
                bar.enable_steady_tick(Duration::from_millis(200));
                Out::Bar(bar)
            }
            Mode::Plain => {
                log::info!("{verb} {image}");
                Out::Plain
            }
            Mode::Quiet => Out::Quiet,
        }
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

enum Out {
    Bar(ProgressBar),
    Plain,
    Quiet,
}

/// Sizes for people: `512 B`, `1.5 MiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// One line of the engine's pull progress (`CreateImageInfo`).
#[derive(Debug, Clone, Copy, Default)]
pub struct PullEvent<'a> {
    /// The layer's short id for layer events; the tag or nothing otherwise.
    pub id: Option<&'a str>,
    pub status: &'a str,
    pub current: Option<i64>,
    pub total: Option<i64>,
}

/// Layer statuses of the engine's pull progress.
const LAYER_STATUSES: [&str; 10] = [
    "Pulling fs layer",
    "Waiting",
    "Downloading",
    "Verifying Checksum",
    "Download complete",
    "Extracting",
    "Pull complete",
    "Already exists",
    "Retrying",
    "Max retries reached",
];

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Layer {
    downloaded: u64,
    size: u64,
    done: bool,
}

/// What a pull's events add up to: bytes downloaded of all layers, and layers done.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    layers: BTreeMap<String, Layer>,
}

impl Tally {
    /// Takes one event in; returns the layer id when that layer just completed.
    pub fn apply(&mut self, ev: &PullEvent<'_>) -> Option<String> {
        let id = ev.id?;
        if !LAYER_STATUSES.iter().any(|s| ev.status.starts_with(s)) {
            return None;
        }
        let l = self.layers.entry(id.to_string()).or_default();
        let current = ev.current.and_then(|c| u64::try_from(c).ok());
        let total = ev
            .total
            .and_then(|t| u64::try_from(t).ok())
            .filter(|t| *t > 0);
        if ev.status.starts_with("Downloading") {
            if let Some(t) = total {
                l.size = t;
            }
            if let Some(c) = current {
                l.downloaded = c;
            }
        } else if ev.status.starts_with("Download complete")
            || ev.status.starts_with("Verifying Checksum")
            || ev.status.starts_with("Extracting")
        {
            l.downloaded = l.size;
        }
        let completes =
            ev.status.starts_with("Pull complete") || ev.status.starts_with("Already exists");
        if completes && !l.done {
            l.done = true;
            l.downloaded = l.size;
            return Some(id.to_string());
        }
        None
    }

    pub fn downloaded(&self) -> u64 {
        self.layers.values().map(|l| l.downloaded).sum()
    }

    /// Sum of the sizes known so far.
    pub fn size(&self) -> u64 {
        self.layers.values().map(|l| l.size).sum()
    }

    pub fn layers(&self) -> usize {
        self.layers.len()
    }

    pub fn layers_done(&self) -> usize {
        self.layers.values().filter(|l| l.done).count()
    }
}

/// The progress of one pull.
pub struct PullProgress {
    image: String,
    out: Out,
    tally: Tally,
    started: Instant,
    last_line: Instant,
}

impl PullProgress {
    /// Takes one event of the engine's pull progress.
    pub fn event(&mut self, ev: &PullEvent<'_>) {
        let done = self.tally.apply(ev);
        match &self.out {
            Out::Bar(bar) => {
                bar.set_length(self.tally.size());
                bar.set_position(self.tally.downloaded());
                bar.set_message(format!(
                    "{}/{} layers",
                    self.tally.layers_done(),
                    self.tally.layers()
                ));
            }
            Out::Plain => {
                if let Some(layer) = done {
                    log::info!(
                        "pulling {}: layer {layer}: {} ({}/{})",
                        self.image,
                        ev.status,
                        self.tally.layers_done(),
                        self.tally.layers()
                    );
                    self.last_line = Instant::now();
                } else if ev.status.starts_with("Downloading")
                    && self.last_line.elapsed() >= PLAIN_INTERVAL
                {
                    log::info!(
                        "pulling {}: {} of {}",
                        self.image,
                        human(self.tally.downloaded()),
                        human(self.tally.size())
                    );
                    self.last_line = Instant::now();
                } else {
                    log::debug!(
                        "pulling {}: {}{}",
                        self.image,
                        ev.id.map(|i| format!("{i}: ")).unwrap_or_default(),
                        ev.status
                    );
                }
            }
            Out::Quiet => {}
        }
    }

    pub fn tally(&self) -> &Tally {
        &self.tally
    }

    /// The pull succeeded.
    pub fn finish(self) {
        if !matches!(self.out, Out::Quiet) {
            log::info!(
                "pulled {} ({} layers, {}, {:.1} s)",
                self.image,
                self.tally.layers(),
                human(self.tally.size()),
                self.started.elapsed().as_secs_f64()
            );
        }
        // Drop clears the bar.
    }
}

impl Drop for PullProgress {
    fn drop(&mut self) {
        if let Out::Bar(bar) = &self.out {
            bar.finish_and_clear();
        }
    }
}

/// The progress of one export.
pub struct ExportProgress {
    image: String,
    out: Out,
    bytes: u64,
    started: Instant,
    last_line: Instant,
    done: bool,
}

impl ExportProgress {
    /// `n` more bytes were read.
    pub fn add(&mut self, n: usize) {
        self.bytes = self.bytes.saturating_add(n as u64);
        match &self.out {
            Out::Bar(bar) => bar.set_position(self.bytes),
            Out::Plain if self.last_line.elapsed() >= PLAIN_INTERVAL => {
                log::info!("exporting {}: {} so far", self.image, human(self.bytes));
                self.last_line = Instant::now();
            }
            _ => {}
        }
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The whole export was read.
    pub fn finish(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        if let Out::Bar(bar) = &self.out {
            bar.finish_and_clear();
        }
        if !matches!(self.out, Out::Quiet) {
            log::info!(
                "exported {} ({}, {:.1} s)",
                self.image,
                human(self.bytes),
                self.started.elapsed().as_secs_f64()
            );
        }
    }
}

impl Drop for ExportProgress {
    fn drop(&mut self) {
        if let Out::Bar(bar) = &self.out {
            bar.finish_and_clear();
        }
        if !self.done {
            log::debug!(
                "export of {} stopped after {}",
                self.image,
                human(self.bytes)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev<'a>(id: &'a str, status: &'a str, cur: Option<i64>, total: Option<i64>) -> PullEvent<'a> {
        PullEvent {
            id: Some(id),
            status,
            current: cur,
            total,
        }
    }

    #[test]
    fn a_pull_adds_up_over_layers() {
        let mut t = Tally::default();
        assert_eq!(t.apply(&ev("1", "Pulling from x/y", None, None)), None);
        assert_eq!(t.layers(), 0, "the tag line is not a layer");
        t.apply(&ev("aaa", "Pulling fs layer", None, None));
        t.apply(&ev("bbb", "Pulling fs layer", None, None));
        t.apply(&ev("ccc", "Already exists", None, None));
        t.apply(&ev("aaa", "Downloading", Some(100), Some(1000)));
        t.apply(&ev("bbb", "Downloading", Some(50), Some(200)));
        assert_eq!((t.downloaded(), t.size()), (150, 1200));
        assert_eq!((t.layers_done(), t.layers()), (1, 3));
        t.apply(&ev("bbb", "Download complete", None, None));
        assert_eq!(t.downloaded(), 300);
        t.apply(&ev("aaa", "Extracting", Some(10), Some(1000)));
        assert_eq!(t.downloaded(), 1200, "extracting means downloaded");
        assert_eq!(
            t.apply(&ev("aaa", "Pull complete", None, None)).as_deref(),
            Some("aaa")
        );
        assert_eq!(t.apply(&ev("aaa", "Pull complete", None, None)), None);
        t.apply(&PullEvent {
            id: None,
            status: "Digest: sha256:00",
            ..Default::default()
        });
        t.apply(&ev("bbb", "Downloading", Some(-5), Some(-1)));
        assert_eq!((t.layers_done(), t.layers()), (2, 3));
    }

    #[test]
    fn sizes_for_people() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(1023), "1023 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(3 * 1024 * 1024), "3.0 MiB");
        assert_eq!(human(u64::MAX), "16777216.0 TiB");
    }

    #[test]
    fn hidden_bars_take_events_without_drawing() {
        let p = Progress::bars(ProgressDrawTarget::hidden());
        assert!(p.is_bars());
        let mut pull = p.pull("docker.io/x/y:1");
        pull.event(&ev("aaa", "Downloading", Some(5), Some(10)));
        assert_eq!(pull.tally().downloaded(), 5);
        pull.finish();
        let mut e = p.export("docker.io/x/y:1");
        e.add(10);
        e.add(20);
        assert_eq!(e.bytes(), 30);
        e.finish();
        e.finish();
    }
}
