use std::io::Write;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::*;

/// A sink whose writes wait while its gate is closed, like a pipe nobody reads.
#[derive(Clone, Default)]
struct GatedSink {
    out: Arc<Mutex<Vec<u8>>>,
    gate: Arc<(Mutex<bool>, Condvar)>,
    writes: Arc<Mutex<usize>>,
}

impl GatedSink {
    fn closed() -> Self {
        let sink = GatedSink::default();
        *sink.gate.0.lock().unwrap() = true;
        sink
    }

    fn open(&self) {
        *self.gate.0.lock().unwrap() = false;
        self.gate.1.notify_all();
    }

    fn lines(&self) -> Vec<String> {
        String::from_utf8(self.out.lock().unwrap().clone())
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Write for GatedSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let (closed, opened) = &*self.gate;
        let mut closed = closed.lock().unwrap();
        while *closed {
            closed = opened.wait(closed).unwrap();
        }
        *self.writes.lock().unwrap() += 1;
        self.out.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn line(thread: usize, n: usize) -> String {
    // Lengths vary so that a torn line would not happen to parse.
    format!(
        "{{\"thread\":{thread},\"n\":{n},\"pad\":\"{}\"}}\n",
        "x".repeat(n % 97)
    )
}

/// Runs `f` on a thread and fails if it has not finished within `limit`.
fn finishes_within(limit: Duration, f: impl FnOnce() + Send + 'static) -> bool {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        f();
        let _ = tx.send(());
    });
    rx.recv_timeout(limit).is_ok()
}

#[test]
fn flush_writes_every_accepted_line_in_order() {
    let sink = GatedSink::default();
    let writer = BufferedWriter::builder()
        .write_interval(Duration::from_secs(60))
        .to(sink.clone());
    for n in 0..1000 {
        writer.write_line(line(0, n).as_bytes());
    }
    writer.flush();
    let lines = sink.lines();
    assert_eq!(lines.len(), 1000);
    for (n, l) in lines.iter().enumerate() {
        assert_eq!(format!("{l}\n"), line(0, n));
    }
    // Far fewer writes than lines: the worker writes chunks.
    let writes = *sink.writes.lock().unwrap();
    assert!(writes < 100, "{writes} writes for 1000 lines");
}

#[test]
fn lines_from_many_threads_never_interleave() {
    let sink = GatedSink::default();
    let writer = Arc::new(
        BufferedWriter::builder()
            .capacity(64 * 1024)
            .overflow(Overflow::Block)
            .to(sink.clone()),
    );
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let writer = writer.clone();
            std::thread::spawn(move || {
                for n in 0..5000 {
                    writer.write_line(line(t, n).as_bytes());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    writer.flush();
    let lines = sink.lines();
    assert_eq!(lines.len(), 8 * 5000);
    let mut next = [0usize; 8];
    for l in &lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        let t = v["thread"].as_u64().unwrap() as usize;
        assert_eq!(
            v["n"].as_u64().unwrap() as usize,
            next[t],
            "thread {t} out of order"
        );
        next[t] += 1;
    }
}

#[test]
fn a_full_buffer_drops_and_counts_without_blocking_the_caller() {
    let sink = GatedSink::closed();
    let writer = Arc::new(
        BufferedWriter::builder()
            .capacity(4096)
            .write_interval(Duration::ZERO)
            .to(sink.clone()),
    );
    let w = writer.clone();
    let wrote_all = finishes_within(Duration::from_secs(20), move || {
        for n in 0..10_000 {
            w.write_line(line(0, n).as_bytes());
        }
    });
    assert!(wrote_all, "a caller blocked on a stalled destination");
    let dropped = writer.dropped_lines();
    assert!(dropped > 9000, "only {dropped} of 10000 lines dropped");

    sink.open();
    writer.flush();
    let lines = sink.lines();
    let notes: Vec<serde_json::Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v.get("dropped_lines").is_some())
        .collect();
    // One note per write cycle that saw drops: one or two here, depending on when the
    // worker took its first chunk.
    assert!((1..=2).contains(&notes.len()), "{} notes", notes.len());
    let noted: u64 = notes
        .iter()
        .map(|n| n["dropped_lines"].as_u64().unwrap())
        .sum();
    assert_eq!(noted, dropped);
    assert!(notes.iter().all(|n| n["level"] == "warn"));
    // Every line is either written or counted.
    assert_eq!(lines.len() as u64 - notes.len() as u64 + dropped, 10_000);
}

#[test]
fn block_waits_for_room_and_loses_nothing() {
    let sink = GatedSink::closed();
    let writer = Arc::new(
        BufferedWriter::builder()
            .capacity(4096)
            .overflow(Overflow::Block)
            .to(sink.clone()),
    );
    let w = writer.clone();
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for n in 0..2000 {
            w.write_line(line(0, n).as_bytes());
        }
        let _ = done_tx.send(());
    });
    assert!(
        done_rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "the caller did not wait for a stalled destination"
    );
    sink.open();
    done_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the caller stayed blocked after the destination recovered");
    writer.flush();
    assert_eq!(sink.lines().len(), 2000);
    assert_eq!(writer.dropped_lines(), 0);
}

#[test]
fn flush_gives_up_on_a_stalled_destination() {
    let sink = GatedSink::closed();
    let writer = BufferedWriter::builder().to(sink.clone());
    writer.write_line(line(0, 0).as_bytes());
    let started = Instant::now();
    writer.flush();
    let waited = started.elapsed();
    assert!(
        waited >= FLUSH_WAIT && waited < FLUSH_WAIT * 5,
        "flush waited {waited:?}"
    );
    sink.open();
}

#[test]
fn a_line_larger_than_the_buffer_is_still_written() {
    let sink = GatedSink::default();
    let writer = BufferedWriter::builder().capacity(16).to(sink.clone());
    let big = line(0, 96);
    writer.write_line(big.as_bytes());
    writer.flush();
    assert_eq!(sink.lines(), vec![big.trim_end().to_owned()]);
    assert_eq!(writer.dropped_lines(), 0);
}

#[test]
fn dropping_the_writer_writes_what_it_buffers() {
    let sink = GatedSink::default();
    let writer = BufferedWriter::builder()
        .write_interval(Duration::from_secs(60))
        .to(sink.clone());
    for n in 0..10 {
        writer.write_line(line(0, n).as_bytes());
    }
    drop(writer);
    assert_eq!(sink.lines().len(), 10);
}

#[test]
fn after_close_lines_are_written_at_once() {
    let sink = GatedSink::default();
    let writer = BufferedWriter::builder()
        .write_interval(Duration::from_secs(60))
        .to(sink.clone());
    writer.write_line(line(0, 0).as_bytes());
    writer.close();
    assert_eq!(sink.lines().len(), 1);
    // Logged on the way out, after the last flush: no flush will come, so it goes through.
    writer.write_line(line(0, 1).as_bytes());
    assert_eq!(sink.lines().len(), 2);
}
