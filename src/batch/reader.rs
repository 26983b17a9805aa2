//! The input reader: every source in turn, as one stream of lines, on a
//! thread of its own. Each line is parsed and prepared there, so the thread
//! that sends the requests does not.

use crate::core::request::{is_blank, parse_line, InputError, Request};

/// Where input lines come from. Every source is opened once: a regular
/// file when it is checked, before any work; anything else (a FIFO, a
/// process substitution such as `<(zcat in.jsonl.gz)`, a device) only when
/// its turn comes, since opening a FIFO waits for its writer, and reading a
/// pipe ahead would take its lines.
#[derive(Debug)]
pub enum Source {
    Stdin,
    /// A regular file, open.
    File(std::path::PathBuf, std::fs::File),
    /// Anything else named by a path, not opened yet.
    Stream(std::path::PathBuf),
    /// Lines given whole, as `--prompt`'s.
    Text(Vec<u8>),
}

impl Source {
    /// The source an argument names (`-` is standard input): a regular file
    /// is opened now, so a bad path fails before any work; a path that is
    /// not a regular file must exist and not be a directory.
    pub fn from_arg(arg: &std::path::Path) -> Result<Source, String> {
        if arg.as_os_str() == "-" {
            return Ok(Source::Stdin);
        }
        let named = |e: std::io::Error| format!("{}: {e}", arg.display());
        let meta = std::fs::metadata(arg).map_err(named)?;
        if meta.is_dir() {
            return Err(format!("{}: is a directory", arg.display()));
        }
        if !meta.is_file() {
            return Ok(Source::Stream(arg.to_path_buf()));
        }
        let file = std::fs::File::open(arg).map_err(named)?;
        Ok(Source::File(arg.to_path_buf(), file))
    }

    /// The open file of a regular file source.
    pub fn regular_file(&self) -> Option<&std::fs::File> {
        match self {
            Source::File(_, f) => Some(f),
            _ => None,
        }
    }

    fn open(self) -> std::io::Result<Box<dyn std::io::Read + Send>> {
        Ok(match self {
            Source::Stdin => Box::new(std::io::stdin()),
            Source::File(_, f) => Box::new(f),
            Source::Stream(p) => Box::new(std::fs::File::open(p)?),
            Source::Text(bytes) => Box::new(std::io::Cursor::new(bytes)),
        })
    }

    fn name(&self) -> String {
        match self {
            Source::Stdin => "standard input".into(),
            Source::File(p, _) | Source::Stream(p) => p.display().to_string(),
            Source::Text(_) => "the prompt".into(),
        }
    }
}

/// What the reader thread sends.
#[derive(Debug)]
// Nearly every event is a line: boxing it would cost an allocation a line.
#[allow(clippy::large_enum_variant)]
pub enum InputEvent {
    /// A 1-based line number across all sources, and the line parsed. Blank
    /// lines are counted but not sent.
    Line(u64, Result<Request, InputError>),
    /// Reading failed; nothing more follows.
    Error(String),
}

/// The lines in `events` and in the batches waiting in `rx`: read, and not
/// taken.
pub fn lines_in(
    events: impl Iterator<Item = InputEvent>,
    rx: &mut tokio::sync::mpsc::Receiver<Vec<InputEvent>>,
) -> u64 {
    let is_line = |e: &InputEvent| matches!(e, InputEvent::Line(..));
    let mut n = events.filter(is_line).count();
    while let Ok(batch) = rx.try_recv() {
        n += batch.iter().filter(|e| is_line(e)).count();
    }
    n as u64
}

/// In debug builds only: panics on the line numbered
/// `LLMROUTE_FAIL_PARSE_LINE`, so that tests can see what a bug in the reader
/// does to the run (an `internal_error` line, the rest goes on).
#[cfg(debug_assertions)]
fn fail_point(line_no: u64) {
    if crate::setup::fail_point_hit("LLMROUTE_FAIL_PARSE_LINE", line_no) {
        panic!("injected failure while reading line {line_no}");
    }
}

/// Lines per batch sent by the reader, at most.
pub const BATCH_LINES: usize = 256;
/// Bytes of lines per batch, past which a batch is sent at once.
const BATCH_BYTES: usize = 1 << 20;
/// Batches waiting in the channel, at most: with [`BATCH_BYTES`], what bounds
/// the memory the reader may run ahead by.
pub const CHANNEL_BATCHES: usize = 4;

/// Reads `sources` in order as one stream of lines on a thread of its own,
/// sending them in batches into a bounded channel: when the pipeline falls
/// behind, the reader waits, so memory does not grow with the input. Lines
/// go in batches so that the pipeline does not wake the reader once a line;
/// a batch is sent as soon as the input has nothing more buffered, so a slow
/// stream (`tail -f | llmroute`) is not held back waiting for company.
/// Each line is parsed and [prepared](Request::prepare) there too; `keyed`
/// says whether the run uses the cache.
pub fn spawn(
    sources: Vec<Source>,
    keyed: bool,
    tx: tokio::sync::mpsc::Sender<Vec<InputEvent>>,
) -> std::io::Result<()> {
    use std::panic::AssertUnwindSafe;
    // In debug builds only: tests see what a thread that cannot start does.
    #[cfg(debug_assertions)]
    if std::env::var_os("LLMROUTE_FAIL_READER_START").is_some() {
        return Err(std::io::Error::other("injected failure"));
    }
    let spawned = std::thread::Builder::new()
        .name("llmroute-input".into())
        .spawn(move || {
            // A bug past the per-line guard ends the input with an error, not
            // quietly as if the input had ended.
            let read = std::panic::catch_unwind(AssertUnwindSafe(|| read_all(sources, keyed, &tx)));
            if read.is_err() {
                let _ = tx.blocking_send(vec![InputEvent::Error(
                    "llmroute failed while reading (an internal error; please report it)".into(),
                )]);
            }
        });
    spawned.map(drop)
}

/// The reader thread's work: every source in turn, in batches.
fn read_all(sources: Vec<Source>, keyed: bool, tx: &tokio::sync::mpsc::Sender<Vec<InputEvent>>) {
    use std::io::BufRead;
    use std::panic::AssertUnwindSafe;
    let mut line_no = 0u64;
    let mut buf = Vec::new();
    let mut batch = Vec::with_capacity(BATCH_LINES);
    let mut batch_bytes = 0usize;
    for source in sources {
        let name = source.name();
        let reader = match source.open() {
            Ok(r) => r,
            Err(e) => {
                batch.push(InputEvent::Error(format!("{name}: {e}")));
                let _ = tx.blocking_send(batch);
                return;
            }
        };
        let mut reader = std::io::BufReader::with_capacity(256 * 1024, reader);
        loop {
            // Lines are parsed here, so one buffer serves them all.
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) => break,
                Ok(_) => {
                    if buf.last() == Some(&b'\n') {
                        buf.pop();
                    }
                    line_no += 1;
                    if !is_blank(&buf) {
                        batch_bytes += buf.len();
                        // Parsed here, on the reader's own thread: the
                        // thread that sends the requests has enough to do.
                        // A bug here costs this line an internal_error
                        // line, not the rest of the input.
                        let parsed = std::panic::catch_unwind(AssertUnwindSafe(|| {
                            #[cfg(debug_assertions)]
                            fail_point(line_no);
                            parse_line(&buf).map(|mut req| {
                                req.prepare(keyed);
                                req
                            })
                        }))
                        .unwrap_or_else(|_| Err(InputError::internal()));
                        batch.push(InputEvent::Line(line_no, parsed));
                    }
                    if batch.is_empty() {
                        continue;
                    }
                    if batch.len() >= BATCH_LINES
                        || batch_bytes >= BATCH_BYTES
                        || reader.buffer().is_empty()
                    {
                        let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH_LINES));
                        batch_bytes = 0;
                        if tx.blocking_send(full).is_err() {
                            return;
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    batch.push(InputEvent::Error(format!("{name}: {e}")));
                    let _ = tx.blocking_send(batch);
                    return;
                }
            }
        }
    }
    if !batch.is_empty() {
        let _ = tx.blocking_send(batch);
    }
}
