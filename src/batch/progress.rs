//! The progress bar on stderr: lines done (of the total, when the input is
//! files), rate, cache hits, errors, spend and ETA. Shown on a terminal
//! unless `--quiet`; `--progress always|never` overrides. Drawn with
//! terminal escapes only when `--color` allows them; else each redraw
//! blanks the line with spaces.

use std::io::{IsTerminal, Write};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle, TermLike};

use crate::batch::reader::Source;
use crate::cli::Progress;
use crate::core::numbers;

/// A bar for a run over `sources`, or `None` when none is shown.
/// `escapes` says whether stderr may take terminal escapes.
pub fn bar(
    when: Progress,
    quiet: bool,
    escapes: impl FnOnce(bool) -> bool,
    sources: &[Source],
) -> Option<ProgressBar> {
    let on_terminal = std::io::stderr().is_terminal();
    let show = match when {
        Progress::Never => false,
        Progress::Always => true,
        Progress::Auto => on_terminal && !quiet,
    };
    if !show {
        return None;
    }
    let total = total_lines(sources);
    let target = target(on_terminal, escapes(on_terminal));
    let pb = ProgressBar::with_draw_target(total, target);
    let template = match total {
        Some(_) => "{spinner} {wide_bar} {pos}/{len} {lines} · {rate} · {msg} · ETA {eta}",
        None => "{spinner} {pos} {lines} · {rate} · {msg}",
    };
    pb.set_style(
        ProgressStyle::with_template(template)
            .expect("a valid template")
            .with_key("rate", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = w.write_str(&numbers::per_second(s.per_sec()));
            })
            .with_key("lines", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                let n = s.len().unwrap_or(s.pos());
                let _ = w.write_str(if n == 1 { "line" } else { "lines" });
            })
            .progress_chars("█▉▊▋▌▍▎▏ "),
    );
    Some(pb)
}

fn target(on_terminal: bool, escapes: bool) -> ProgressDrawTarget {
    match (on_terminal, escapes) {
        (true, true) => ProgressDrawTarget::stderr_with_hz(10),
        (true, false) => ProgressDrawTarget::term_like_with_hz(Box::new(Stderr { escapes }), 10),
        // Forced onto something that is not a terminal (`--progress always`).
        (false, _) => ProgressDrawTarget::term_like_with_hz(Box::new(Stderr { escapes }), 4),
    }
}

/// Non-blank lines in `sources`, when they are all regular files: each is
/// counted through its open handle, which is then rewound. A pipe or a FIFO
/// is never read ahead, as that would take its lines from the run.
fn total_lines(sources: &[Source]) -> Option<u64> {
    use std::io::{Seek, SeekFrom};
    let files: Vec<&std::fs::File> = sources
        .iter()
        .map(Source::regular_file)
        .collect::<Option<_>>()?;
    let mut total = 0;
    for mut f in files {
        total += count_non_blank(f).ok()?;
        f.seek(SeekFrom::Start(0)).ok()?;
    }
    Some(total)
}

/// Counts lines holding something other than whitespace.
pub fn count_non_blank(mut r: impl std::io::Read) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 256 * 1024];
    let (mut count, mut in_line_content) = (0u64, false);
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        for &b in &buf[..n] {
            if b == b'\n' {
                count += in_line_content as u64;
                in_line_content = false;
            } else if !b.is_ascii_whitespace() {
                in_line_content = true;
            }
        }
    }
    Ok(count + in_line_content as u64)
}

/// The width the bar is drawn at off a terminal, or without escapes.
const WIDTH: u16 = 80;

/// Plain stderr, with ANSI cursor movement when `escapes`; without, the
/// bar (one line) is redrawn over spaces.
#[derive(Debug)]
struct Stderr {
    escapes: bool,
}

impl Stderr {
    fn put(&self, s: &str) -> std::io::Result<()> {
        std::io::stderr().lock().write_all(s.as_bytes())
    }

    /// `ESC [ n code`, when escapes are allowed and `n` is not 0.
    fn cursor(&self, n: usize, code: char) -> std::io::Result<()> {
        if self.escapes && n > 0 {
            self.put(&format!("\x1b[{n}{code}"))?;
        }
        Ok(())
    }
}

impl TermLike for Stderr {
    fn width(&self) -> u16 {
        WIDTH
    }
    fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
        self.cursor(n, 'A')
    }
    fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
        self.cursor(n, 'B')
    }
    fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
        self.cursor(n, 'C')
    }
    fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
        self.cursor(n, 'D')
    }
    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.put(&format!("{s}\n"))
    }
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        self.put(s)
    }
    fn clear_line(&self) -> std::io::Result<()> {
        if self.escapes {
            self.put("\r\x1b[2K")
        } else {
            self.put(&format!("\r{:w$}\r", "", w = usize::from(WIDTH)))
        }
    }
    fn flush(&self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_non_blank_lines() {
        assert_eq!(count_non_blank(&b"a\n\n  \nb\r\nc"[..]).unwrap(), 3);
        assert_eq!(count_non_blank(&b""[..]).unwrap(), 0);
        assert_eq!(count_non_blank(&b"\n\n"[..]).unwrap(), 0);
    }
}
