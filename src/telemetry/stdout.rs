//! Standard output for log lines, written in batches. Under load the service logs two or three
//! lines per request, and a `write(2)` per line (what `std::io::Stdout` does, under a lock held
//! across the call) put the log pipe's system calls and the lock's futex waits at about a fifth
//! of a confirm's CPU in the profile. Here a line is appended to a pending buffer (a short lock,
//! no system call); a flusher thread, woken when the buffer stops being empty, waits
//! [`FLUSH_AFTER`] for more and writes them with one call. One writer at a time, in order, so
//! lines never interleave, however long. A line reaches stdout within about `FLUSH_AFTER`; the
//! service flushes what is pending when it exits, and a `SIGKILL` loses at most that much.

use std::io::{self, Write};
use std::sync::{Condvar, LazyLock, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How long the flusher gathers lines after the first of a batch.
pub const FLUSH_AFTER: Duration = Duration::from_millis(2);

/// Pending bytes past which a line's writer writes the batch itself (memory stays bounded when
/// the flusher falls behind, and the reader's pace holds the service back as a blocking write
/// would).
const MAX_PENDING: usize = 1 << 20;

/// Lines bound for `W`.
struct Batches<W> {
    pending: Mutex<Vec<u8>>,
    /// Signalled when `pending` stops being empty.
    ready: Condvar,
    /// The buffer being written and where it goes; its lock orders the writes, so `W`'s own lock
    /// (stdout's) is never contended.
    writing: Mutex<(Vec<u8>, W)>,
}

impl<W: Write> Batches<W> {
    fn new(out: W) -> Self {
        Self {
            pending: Mutex::new(Vec::new()),
            ready: Condvar::new(),
            writing: Mutex::new((Vec::new(), out)),
        }
    }

    fn push(&self, line: &[u8]) -> io::Result<()> {
        let mut pending = lock(&self.pending);
        let first = pending.is_empty();
        pending.extend_from_slice(line);
        let full = pending.len() >= MAX_PENDING;
        drop(pending);
        if full {
            self.flush()
        } else {
            if first {
                self.ready.notify_one();
            }
            Ok(())
        }
    }

    /// Writes everything pending, after anything already being written.
    fn flush(&self) -> io::Result<()> {
        let mut writing = lock(&self.writing);
        let (batch, out) = &mut *writing;
        std::mem::swap(&mut *lock(&self.pending), batch);
        let written = out.write_all(batch).and_then(|()| out.flush());
        batch.clear();
        written
    }

    /// The flusher's loop: wait for a line, gather for [`FLUSH_AFTER`], write.
    fn run(&self) -> ! {
        loop {
            let mut pending = lock(&self.pending);
            while pending.is_empty() {
                pending = self.ready.wait(pending).unwrap_or_else(|e| e.into_inner());
            }
            drop(pending);
            std::thread::sleep(FLUSH_AFTER);
            // Nowhere to report a failed write of the log itself; the next batch tries again.
            let _ = self.flush();
        }
    }
}

/// A lock whose holder panicked still guards plain bytes: go on with them.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

static STDOUT: LazyLock<Batches<io::Stdout>> = LazyLock::new(|| Batches::new(io::stdout()));
static FLUSHER: OnceLock<()> = OnceLock::new();

/// Writes what is pending to stdout now (at exit).
pub fn flush() {
    let _ = STDOUT.flush();
}

/// The log layer's writer: standard output, through the batches.
#[derive(Clone, Copy, Default)]
pub struct Lines;

impl<'a> MakeWriter<'a> for Lines {
    type Writer = Lines;

    fn make_writer(&'a self) -> Lines {
        Lines
    }
}

impl io::Write for Lines {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf).map(|()| buf.len())
    }

    fn write_all(&mut self, line: &[u8]) -> io::Result<()> {
        FLUSHER.get_or_init(|| {
            std::thread::Builder::new()
                .name("authsession-log".into())
                .spawn(|| STDOUT.run())
                .expect("spawn the log flusher thread");
        });
        STDOUT.push(line)
    }

    fn flush(&mut self) -> io::Result<()> {
        // The layer flushes after every line: the flusher thread decides when to write.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader};
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    /// Four threads log short and long lines (a long one larger than a pipe's buffer, so it takes
    /// several writes, and together past `MAX_PENDING`, so writers flush too) while a flusher
    /// writes batches into one pipe that a slow reader drains: every line comes out whole, and
    /// each writer's in its order.
    #[test]
    fn concurrent_lines_come_out_whole_and_in_order() {
        let (read, write) = nix::unistd::pipe().unwrap();
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(std::fs::File::from(read)).lines() {
                lines.push(line.unwrap());
                if lines.len() % 64 == 0 {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
            lines
        });
        let (batches, done) = (
            Batches::new(std::fs::File::from(write)),
            AtomicBool::new(false),
        );
        std::thread::scope(|scope| {
            let (batches, done) = (&batches, &done);
            scope.spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    batches.flush().unwrap();
                    std::thread::sleep(Duration::from_millis(1));
                }
            });
            let writers: Vec<_> = (0..4u8)
                .map(|writer| {
                    scope.spawn(move || {
                        let letter = (b'a' + writer) as char;
                        for n in 0..300usize {
                            let len = if n % 5 == 0 { 70_000 } else { 100 };
                            let line = format!("{n:04}{}\n", letter.to_string().repeat(len));
                            batches.push(line.as_bytes()).unwrap();
                        }
                    })
                })
                .collect();
            for writer in writers {
                writer.join().unwrap();
            }
            done.store(true, Ordering::Relaxed);
        });
        batches.flush().unwrap();
        // Closing the pipe's write end ends the reader.
        drop(batches);
        let lines = reader.join().unwrap();
        assert_eq!(lines.len(), 1200);
        let mut next = std::collections::HashMap::new();
        for line in &lines {
            let (n, body) = line.split_at(4);
            let letter = body.as_bytes()[0];
            assert!(
                body.bytes().all(|b| b == letter) && [100, 70_000].contains(&body.len()),
                "a line of {} bytes mixes writers",
                line.len()
            );
            let expected = next.entry(letter).or_insert(0usize);
            assert_eq!(n.parse::<usize>().unwrap(), *expected, "out of order");
            *expected += 1;
        }
    }
}
