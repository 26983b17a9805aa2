//! `--grade CMD`: an evaluation run that teaches the router as it goes.
//! Each answered line's request and answer go, as one JSON object, to
//! `sh -c CMD` on its standard input; the first word it prints is the
//! answer's score (a number in 0..1, `true` or `false`). The score is taken
//! in at once by this run's router, and written to the store as feedback
//! on the line's request id, by a thread of its own, once the line's
//! record is there.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::core::learned::score_of;
use crate::engine::learned::QualityBook;
use crate::store::learned::{Feedback, Judge};
use crate::store::Store;

/// How long a grade waits for its line's record before it is given up.
const RECORD_WAIT: Duration = Duration::from_secs(10);

/// What a grader is shown of one line.
pub struct Graded<'a> {
    pub rid: &'a str,
    pub task: &'a str,
    pub model: &'a str,
    /// The request body as sent (JSON).
    pub request: &'a [u8],
    /// The upstream's answer (JSON).
    pub answer: &'a str,
    pub content: Option<&'a str>,
}

pub struct Grader {
    cmd: String,
    /// How long the grader may take for one answer (`--grade-timeout`).
    timeout: Duration,
    book: Arc<QualityBook>,
    /// Redis, with `--redis`: every grade goes into the shared posterior
    /// as well, which the run's router reads back from there.
    shared: Option<Shared>,
    tx: Mutex<Option<Sender<Feedback>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    running: Arc<Running>,
}

/// The graders running, by process group, so that a run that stops kills
/// them (they are groups of their own, which a terminal's Ctrl-C does not
/// reach).
#[derive(Default)]
struct Running {
    groups: Mutex<std::collections::HashSet<i32>>,
    stopped: std::sync::atomic::AtomicBool,
}

impl Running {
    fn stopped(&self) -> bool {
        self.stopped.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Whether process `pid`, a child, has exited, without reaping it.
fn exited(pid: i32) -> bool {
    // SAFETY: waitid(2) writes only into `info`, which lives across the call.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
        libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, flags) == 0 && info.si_pid() == pid
    }
}

/// Kills process group `group`.
fn kill_group(group: i32) {
    // SAFETY: kill(2) with a process group id; no memory involved.
    unsafe { libc::kill(-group, libc::SIGKILL) };
}

/// Has the grader killed when this process dies, even by `kill -9`, which
/// leaves no time to kill its group: on Linux, by the parent-death signal.
/// The thread that starts a grader waits for it, so the signal, which comes
/// when that thread ends, comes no sooner than the process's death.
fn die_with_this_process(command: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: between fork and exec only async-signal-safe calls:
        // prctl(2) and getppid(2), with no memory shared or allocated.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // This process died before the signal was asked for.
                if libc::getppid() != parent {
                    return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = command;
}

/// Kills a grader's process group should this process die without ending
/// it (by `kill -9`): the parent-death signal reaches only the shell,
/// not the program it runs nor what that starts. A small shell of its
/// own waits for its input to end; it ends with "done" once the group was
/// ended here, and with nothing when this process died.
struct Guard(Option<std::process::Child>);

impl Guard {
    fn new(group: i32) -> Guard {
        use std::os::unix::process::CommandExt;
        let child = Command::new("sh")
            .args([
                "-c",
                r#"read -r done; [ "$done" = done ] || kill -s KILL -- "-$1" 2>/dev/null"#,
                "llmroute-grade-guard",
                &group.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Out of the run's group: Ctrl-C is the run's to handle.
            .process_group(0)
            .spawn()
            .ok();
        Guard(child)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut guard) = self.0.take() {
            if let Some(mut input) = guard.stdin.take() {
                let _ = input.write_all(b"done\n");
            }
            let _ = guard.wait();
        }
    }
}

/// Where grades are shared, and whether Redis has stopped answering.
struct Shared {
    link: Arc<crate::shared::Link>,
    upstream: String,
    down: std::sync::atomic::AtomicBool,
}

impl Grader {
    /// A grader running `cmd`, whose scores go to the store at `path`
    /// (learned under `upstream`), into `book` and, with `redis`, into the
    /// posterior shared there.
    pub fn start(
        (cmd, timeout): (String, Duration),
        path: std::path::PathBuf,
        upstream: String,
        book: Arc<QualityBook>,
        redis: Option<Arc<crate::shared::Link>>,
    ) -> Grader {
        let shared = redis.map(|link| Shared {
            link,
            upstream: upstream.clone(),
            down: Default::default(),
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let hl = book.half_life_ms;
        let thread = std::thread::Builder::new()
            .name("llmroute-grades".into())
            .spawn(move || write_grades(rx, &path, &upstream, hl))
            .ok();
        Grader {
            cmd,
            timeout,
            book,
            shared,
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(thread),
            running: Arc::default(),
        }
    }

    /// Kills every grader running, and any started from now on: the run
    /// stops (Ctrl-C, a signal), and a line being graded goes out
    /// without its grade rather than waiting for one.
    pub fn stop(&self) {
        self.running
            .stopped
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let groups = self
            .running
            .groups
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        groups.iter().copied().for_each(kill_group);
    }

    /// Grades one answer: runs the command on a blocking thread, takes its
    /// score in, and queues it for the store. Err: why there is no grade.
    pub async fn grade(&self, g: Graded<'_>) -> Result<f64, String> {
        // The body as sent to the model that answered: with its `model`.
        let mut request =
            serde_json::from_slice::<serde_json::Value>(g.request).unwrap_or_default();
        if let Some(body) = request.as_object_mut() {
            body.insert("model".into(), g.model.into());
        }
        let input = serde_json::json!({
            "request_id": g.rid,
            "task": g.task,
            "model": g.model,
            "request": request,
            "answer": serde_json::from_str::<serde_json::Value>(g.answer).unwrap_or_default(),
            "content": g.content,
        })
        .to_string();
        let (cmd, timeout, running) = (self.cmd.clone(), self.timeout, self.running.clone());
        let score = tokio::task::spawn_blocking(move || run(&cmd, &input, timeout, &running))
            .await
            .map_err(|_| "the grader did not finish".to_string())??;
        let now = crate::engine::now_ms();
        self.book.add(g.task, g.model, score, 1.0, now);
        self.share(&g, score, now).await;
        if let Some(tx) = &*self.tx.lock().unwrap_or_else(|e| e.into_inner()) {
            let _ = tx.send(Feedback {
                rid: g.rid.to_string(),
                score,
                weight: 1.0,
            });
        }
        Ok(score)
    }

    /// Takes a grade into the shared posterior, and notes it on the
    /// request, so that feedback given later on any machine replaces it.
    /// Redis not answering is no reason to stop: the store has it all; it
    /// is said once.
    async fn share(&self, g: &Graded<'_>, score: f64, now: i64) {
        use std::sync::atomic::Ordering::Relaxed;
        let Some(s) = self.shared.as_ref().filter(|s| !s.down.load(Relaxed)) else {
            return;
        };
        let id = ((None, g.rid), s.upstream.as_str());
        let hl = (now, self.book.half_life_ms);
        let taught = crate::shared::requests::teach_held(
            &s.link,
            id,
            (g.task, g.model),
            (score, 1.0, None),
            hl,
        )
        .await;
        if taught.is_none() && !s.down.swap(true, Relaxed) {
            eprintln!(
                "llmroute: warning: Redis does not answer; the rest of this run's grades \
                 go to the store alone"
            );
        }
    }

    /// Grades an answered line (`--grade`), and puts its score on it. Err:
    /// why the grader gave none.
    pub async fn grade_line(
        &self,
        req: &crate::core::request::Request,
        rid: &str,
        line: &mut super::output::Line,
    ) -> Result<(), String> {
        let (Some(model), Some(answer)) = (&line.model, &line.response) else {
            return Ok(());
        };
        let graded = Graded {
            rid,
            task: req.task(),
            model,
            request: &req.wire,
            answer,
            content: line.content.as_deref(),
        };
        line.grade = Some(self.grade(graded).await?);
        Ok(())
    }

    /// Writes the grades still queued, waiting at most [`RECORD_WAIT`].
    pub fn finish(&self) {
        drop(self.tx.lock().unwrap_or_else(|e| e.into_inner()).take());
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = t.join();
        }
    }
}

/// The most of a grader's output read: its score is the first word.
const OUTPUT_MAX: u64 = 64 * 1024;

/// How long a grader's output may go on after it exited (what it left
/// running, out of its group, may hold the pipe open).
const AFTER_EXIT: Duration = Duration::from_millis(200);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs the grader on `input`; its score. The grader and whatever it
/// starts are one process group, killed whole when it takes more than
/// `limit`; its input is written and its output read while it
/// runs, so that neither a grader that reads nothing nor one that prints
/// much blocks it.
fn run(cmd: &str, input: &str, limit: Duration, running: &Running) -> Result<f64, String> {
    use std::os::unix::process::CommandExt;
    let started = Instant::now();
    let mut command = Command::new("sh");
    command
        .args(["-c", cmd])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0);
    die_with_this_process(&mut command);
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot run the grader: {e}"))?;
    let group = child.id() as i32;
    // Disarmed once the group is ended here, before the grader is reaped
    // (which frees its group id for another).
    let mut guard = Some(Guard::new(group));
    {
        let mut groups = lock(&running.groups);
        groups.insert(group);
        if running.stopped() {
            kill_group(group);
        }
    }
    let mut stdin = child.stdin.take();
    let input = input.to_owned();
    std::thread::spawn(move || {
        // A grader that reads nothing is its own affair.
        if let Some(s) = stdin.as_mut() {
            let _ = s.write_all(input.as_bytes());
        }
    });
    let (printed, out_rx) = read_output(child.stdout.take().expect("the grader's output is piped"));
    let status = wait(&mut child, group, &mut guard, (started, limit), running)?;
    if running.stopped() {
        return Err("the run was interrupted before its grade".into());
    }
    if !status.success() {
        return Err(format!("the grader exited with {status}"));
    }
    score_printed(&printed, &out_rx)
}

/// Waits for the grader `child`, leader of process group `group`, to
/// end within `limit` of `started`: its exit status, or why there is none.
/// Its group is killed and `guard` disarmed before it is reaped, when its
/// group id is still its own.
fn wait(
    child: &mut std::process::Child,
    group: i32,
    guard: &mut Option<Guard>,
    (started, limit): (Instant, Duration),
    running: &Running,
) -> Result<std::process::ExitStatus, String> {
    loop {
        // Reaped under the lock, and forgotten with it: a stop never
        // kills a group id the system may have given to another.
        let mut groups = lock(&running.groups);
        // Reaped only once seen to have exited, after whatever it left
        // behind (which may hold its output open) is killed with its
        // group: while the grader is not reaped, its group id is its own.
        let gone = exited(group);
        if gone {
            kill_group(group);
            drop(guard.take());
        }
        let reaped = match gone {
            true => child.try_wait(),
            false => Ok(None),
        };
        match reaped {
            Ok(Some(status)) => {
                groups.remove(&group);
                return Ok(status);
            }
            Ok(None) if started.elapsed() > limit => {
                // Not yet reaped, so the group is still the grader's.
                kill_group(group);
                drop(guard.take());
                groups.remove(&group);
                drop(groups);
                let _ = child.wait();
                return Err(format!(
                    "the grader took more than {}",
                    crate::core::duration::format(limit)
                ));
            }
            Ok(None) => {
                drop(groups);
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => {
                groups.remove(&group);
                return Err(format!("the grader: {e}"));
            }
        }
    }
}

/// The score a grader that exited printed: its first word. A process that
/// left its group (setsid) may hold the output open for good, so a little
/// while after the grader exited, what it printed by then.
fn score_printed(printed: &Mutex<Vec<u8>>, ended: &Receiver<()>) -> Result<f64, String> {
    let ended = ended.recv_timeout(AFTER_EXIT).is_ok();
    let out = std::mem::take(&mut *lock(printed));
    let text = String::from_utf8_lossy(&out);
    match (text.split_whitespace().next(), ended) {
        (Some(word), _) => score_in(word),
        (None, true) => score_in(""),
        (None, false) => Err("the grader exited with no score, and what it left running \
                              holds its output open"
            .into()),
    }
}

/// Reads a grader's output on a thread of its own, as it comes: what it
/// printed so far (up to [`OUTPUT_MAX`]), and a word when it ends.
fn read_output(mut stdout: std::process::ChildStdout) -> (Arc<Mutex<Vec<u8>>>, Receiver<()>) {
    use std::io::Read;
    let printed = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let into = printed.clone();
    std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        let mut limited = (&mut stdout).take(OUTPUT_MAX);
        loop {
            match limited.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => lock(&into).extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = tx.send(());
        let _ = std::io::copy(&mut stdout, &mut std::io::sink());
    });
    (printed, rx)
}

/// The score a grader printed: `true`, `false`, or a number in 0..1 as
/// programs print them (`.5` from bc, `1.`, `-0`).
fn score_in(word: &str) -> Result<f64, String> {
    let v = match word {
        "true" => serde_json::Value::Bool(true),
        "false" => serde_json::Value::Bool(false),
        _ => word
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite())
            .and_then(|x| serde_json::Number::from_f64(x + 0.0))
            .map(serde_json::Value::Number)
            .ok_or_else(|| {
                format!("the grader printed {word:?}, not a score (0..1, true or false)")
            })?,
    };
    score_of(&v).map_err(|e| format!("the grader's {e}"))
}

/// Writes grades to the store as feedback, each once its line's record is
/// there: a grade whose request is not yet recorded waits and is tried
/// again, up to [`RECORD_WAIT`].
fn write_grades(rx: Receiver<Feedback>, path: &std::path::Path, upstream: &str, hl: i64) {
    let Ok(mut store) = Store::open(path) else {
        return;
    };
    store.set_upstream(upstream);
    let mut waiting: Vec<(Feedback, Instant)> = Vec::new();
    let mut open = true;
    while open || !waiting.is_empty() {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok(f) => waiting.push((f, Instant::now())),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => open = false,
        }
        while let Ok(f) = rx.try_recv() {
            waiting.push((f, Instant::now()));
        }
        let now = crate::engine::now_ms();
        let Ok(tx) = store.write_transaction() else {
            waiting.retain(|(_, since)| since.elapsed() < RECORD_WAIT);
            continue;
        };
        let mut left = Vec::with_capacity(waiting.len());
        for (f, since) in &waiting {
            let again = match store.apply_feedback(f, Judge::Any, now, hl) {
                Ok(Ok(_)) => false,
                // Not recorded yet, or the store busy: tried again, for a while.
                Ok(Err(e)) if e.starts_with("no request") => since.elapsed() < RECORD_WAIT,
                Err(_) => since.elapsed() < RECORD_WAIT,
                Ok(Err(_)) => false,
            };
            if again {
                left.push((f.clone(), *since));
            }
        }
        // A transaction that did not commit took nothing in: all is tried again.
        if tx.commit().is_ok() {
            waiting = left;
        } else {
            waiting.retain(|(_, since)| since.elapsed() < RECORD_WAIT);
        }
        if !open && !waiting.is_empty() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(30);

    #[test]
    fn a_grader_s_first_word_is_its_score() {
        assert_eq!(run("echo 0.75", "{}", T, &Running::default()), Ok(0.75));
        assert_eq!(
            run("cat >/dev/null; echo true", "{}", T, &Running::default()),
            Ok(1.0)
        );
        assert!(run("echo 2", "{}", T, &Running::default()).is_err());
        assert!(run("echo maybe", "{}", T, &Running::default()).is_err());
        // Numbers as programs print them: bc's `.50`, `1.`, a negative zero.
        assert_eq!(score_in(".50"), Ok(0.5));
        assert_eq!(score_in("1."), Ok(1.0));
        let zero = score_in("-0").unwrap();
        assert!(zero == 0.0 && zero.is_sign_positive());
        assert_eq!(score_in("false"), Ok(0.0));
        assert!(score_in("NaN").is_err());
        assert!(score_in("inf").is_err());
        assert!(score_in("\"1\"").is_err());
        assert!(run("exit 3", "{}", T, &Running::default())
            .unwrap_err()
            .contains("exited"));
        // It reads what it is given.
        assert_eq!(
            run(
                "grep -q '\"model\":\"m\"' && echo 1 || echo 0",
                r#"{"model":"m"}"#,
                T,
                &Running::default()
            ),
            Ok(1.0)
        );
    }
}
