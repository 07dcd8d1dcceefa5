//! The event journal: events made while the broker is out of reach, kept on disk until they
//! are delivered.
//!
//! One JSON event per line in `events.jsonl`, appended and synced as each arrives, so a
//! power cut loses none that were written. It is bounded: beyond `capacity` the oldest are
//! dropped and counted, and the count travels with the next delivery as an event of its
//! own. A line that cannot be read (a write cut short) is skipped and reported. Delivered
//! events are cleared by rewriting the file atomically.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use nightscape_core::wire::{self, Event};

/// Events kept by default while offline (a month of a busy site's cue changes and faults).
pub const CAPACITY: usize = 10_000;

#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    events: VecDeque<Event>,
    capacity: usize,
    /// Dropped since the last delivery (oldest first, beyond the capacity).
    dropped: u64,
}

impl Journal {
    /// Opens the journal in `dir`; returns it and the problems met reading it.
    pub fn open(dir: &Path, capacity: usize) -> (Journal, Vec<String>) {
        let path = dir.join("events.jsonl");
        let mut problems = Vec::new();
        let mut events = VecDeque::new();
        let mut dropped = 0;
        // Read as bytes: a line cut short mid-character must cost that line, not the file.
        match fs::read(&path).map(|b| String::from_utf8_lossy(&b).into_owned()) {
            Ok(text) => {
                for (n, line) in text
                    .lines()
                    .enumerate()
                    .filter(|(_, l)| !l.trim().is_empty())
                {
                    match wire::decode::<Event>(line.as_bytes()) {
                        Ok(e) => events.push_back(e),
                        Err(e) => problems.push(format!(
                            "{}:{}: an event that cannot be read was skipped ({e})",
                            path.display(),
                            n + 1
                        )),
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => problems.push(format!("{}: {e}", path.display())),
        }
        while events.len() > capacity {
            events.pop_front();
            dropped += 1;
        }
        (
            Journal {
                path,
                events,
                capacity,
                dropped,
            },
            problems,
        )
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Events dropped since the last delivery.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Keeps `event` until it is delivered.
    pub fn push(&mut self, event: Event) -> io::Result<()> {
        self.events.push_back(event);
        if self.events.len() > self.capacity {
            self.events.pop_front();
            self.dropped += 1;
            // Rewrite now and then rather than at every event once full.
            if self.dropped % 64 == 1 {
                return self.rewrite();
            }
        }
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        let mut line = wire::encode(
            self.events
                .back()
                .ok_or_else(|| io::Error::other("empty"))?,
        );
        line.push(b'\n');
        f.write_all(&line)?;
        f.sync_data()
    }

    /// Up to `max` events kept, oldest first, and how many were dropped; they leave the
    /// journal (the caller delivers them). The file is emptied once all are taken: a power
    /// cut before then delivers some again, which the server's idempotent storage absorbs.
    pub fn take(&mut self, max: usize) -> io::Result<(Vec<Event>, u64)> {
        let n = max.min(self.events.len());
        let events: Vec<Event> = self.events.drain(..n).collect();
        let dropped = std::mem::take(&mut self.dropped);
        if self.events.is_empty() {
            self.rewrite()?;
        }
        Ok((events, dropped))
    }

    fn rewrite(&self) -> io::Result<()> {
        let tmp = self.path.with_extension("jsonl.tmp");
        {
            let mut f = File::create(&tmp)?;
            for e in &self.events {
                f.write_all(&wire::encode(e))?;
                f.write_all(b"\n")?;
            }
            f.sync_all()?;
        }
        fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}
