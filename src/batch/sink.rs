//! The output thread: writes lines in input order (or as they come with
//! `--unordered`), serialising them off the thread that sends requests, and
//! the outbox through which answers arrive once their records commit.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Semaphore;

use super::openai_batch;
use super::output::{Line, Shape};
use super::stop::StopReason;

/// What the output thread is sent.
pub(super) enum OutMsg {
    /// Serialised by the output thread, off the thread that sends requests.
    Line(u64, Box<Line>),
    /// Lines handed on together: those whose records one transaction
    /// committed, or those of one turn of the runtime that wait for none.
    Committed(Vec<(u64, Box<Line>)>),
    /// A line that will have no output (the run was interrupted before it was sent).
    Skip(u64),
}

pub(super) type OutSender = std::sync::mpsc::Sender<OutMsg>;

/// Lines ready to be written (their records committed, or waiting for no
/// commit), gathered so that the output thread gets (and is woken for)
/// them a batch at a time, not line by line: the recorder's after-commit
/// hook hands them on, and the batch run's hand-off task once a turn. It
/// holds a sender only while it holds lines, so the output thread still
/// ends when the last line has been handed on.
#[derive(Default)]
pub(super) struct Outbox(Mutex<Held>);

#[derive(Default)]
struct Held {
    lines: Vec<(u64, Box<Line>)>,
    out: Option<OutSender>,
}

impl Outbox {
    pub(super) fn put(&self, seq: u64, line: Box<Line>, out: OutSender) {
        let mut held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        held.lines.push((seq, line));
        held.out.get_or_insert(out);
    }

    /// Sends what the outbox holds to the output thread, in one message.
    pub(super) fn hand_on(&self) {
        let held = std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()));
        if let Some(out) = held.out {
            let _ = out.send(OutMsg::Committed(held.lines));
        }
    }
}

/// A request to write every pending line now, gaps or not, acknowledged when done.
pub(super) type DrainRequest = std::sync::mpsc::SyncSender<()>;

pub(super) fn output_thread(
    rx: std::sync::mpsc::Receiver<OutMsg>,
    drain: std::sync::mpsc::Receiver<DrainRequest>,
    out: Box<dyn Write + Send>,
    (ordered, shape): (bool, &Shape),
    window: &Semaphore,
    on_stop: &(dyn Fn(StopReason) + Sync),
) {
    let mut out = std::io::BufWriter::with_capacity(128 * 1024, out);
    let mut broken = false;
    let mut ordered = ordered;
    let mut next = 1u64;
    // Lines that came before their turn; `None` for a line with no output.
    let mut pending: BTreeMap<u64, Option<Box<Line>>> = BTreeMap::new();
    let mut buf = Vec::with_capacity(4096);
    let mut write = |line: Option<Box<Line>>,
                     out: &mut std::io::BufWriter<Box<dyn Write + Send>>,
                     broken: &mut bool| {
        if let (Some(line), false) = (line, *broken) {
            buf.clear();
            match shape {
                Shape::Llmroute => line.write_to(&mut buf),
                Shape::OpenAiBatch { run_id } => openai_batch::write(&line, run_id, &mut buf),
            }
            if let Err(e) = out.write_all(&buf) {
                *broken = true;
                on_stop(output_stop(e));
            }
        }
        window.add_permits(1);
    };
    loop {
        let msg = match rx.try_recv() {
            Ok(m) => m,
            Err(std::sync::mpsc::TryRecvError::Disconnected) => break,
            Err(std::sync::mpsc::TryRecvError::Empty) => {
                if !broken {
                    if let Err(e) = out.flush() {
                        broken = true;
                        on_stop(output_stop(e));
                    }
                }
                // Idle: wait for the next line, looking now and then for a drain request.
                match rx.recv_timeout(Duration::from_millis(100)) {
                    Ok(m) => m,
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                        if let Ok(ack) = drain.try_recv() {
                            for (_, line) in std::mem::take(&mut pending) {
                                write(line, &mut out, &mut broken);
                            }
                            ordered = false;
                            if !broken {
                                let _ = out.flush();
                            }
                            let _ = ack.send(());
                        }
                        continue;
                    }
                }
            }
        };
        let mut place = |seq: u64, line: Option<Box<Line>>| {
            if !ordered {
                write(line, &mut out, &mut broken);
            } else if seq == next {
                write(line, &mut out, &mut broken);
                next += 1;
                while let Some(line) = pending.remove(&next) {
                    write(line, &mut out, &mut broken);
                    next += 1;
                }
            } else {
                pending.insert(seq, line);
            }
        };
        match msg {
            OutMsg::Line(seq, line) => place(seq, Some(line)),
            OutMsg::Committed(lines) => {
                for (seq, line) in lines {
                    place(seq, Some(line));
                }
            }
            OutMsg::Skip(seq) => place(seq, None),
        }
    }
    for (_, line) in std::mem::take(&mut pending) {
        write(line, &mut out, &mut broken);
    }
    if !broken {
        if let Err(e) = out.flush() {
            on_stop(output_stop(e));
        }
    }
}

fn output_stop(e: std::io::Error) -> StopReason {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        StopReason::BrokenPipe
    } else {
        StopReason::OutputError(e.to_string())
    }
}
