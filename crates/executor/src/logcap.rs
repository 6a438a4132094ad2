//! A bounded job log: the head and the tail of a container's output, and a
//! line saying what was dropped between them. A container printing 10 GB, or
//! one line of 1 GB, costs at most [`LOG_HEAD_BYTES`] + [`LOG_TAIL_BYTES`] of
//! memory and of log file.

use std::collections::VecDeque;

/// Most bytes kept from the start of a job's output.
pub const LOG_HEAD_BYTES: usize = 1024 * 1024;
/// Most lines kept from the start of a job's output.
pub const LOG_HEAD_LINES: usize = 10_000;
/// Most bytes kept from the end of a job's output.
pub const LOG_TAIL_BYTES: usize = 4 * 1024 * 1024;
/// Most lines kept from the end of a job's output.
pub const LOG_TAIL_LINES: usize = 100_000;
/// Longest piece a line is held in (so a giant line is dropped piecewise).
const SEGMENT: usize = 64 * 1024;
/// How the line that replaces dropped output starts.
pub const LOG_DROPPED_MARKER: &str = "[warden: ";

/// Collects output, keeping its head and tail within the limits above.
#[derive(Debug, Default)]
pub(crate) struct CappedLog {
    head: Vec<u8>,
    head_lines: usize,
    head_full: bool,
    tail: VecDeque<Vec<u8>>,
    tail_bytes: usize,
    tail_lines: usize,
    dropped_bytes: u64,
    dropped_lines: u64,
    /// The last segment dropped ended mid-line: the tail starts mid-line.
    dropped_mid_line: bool,
}

impl CappedLog {
    /// Add output.
    pub(crate) fn push(&mut self, mut data: &[u8]) {
        while !self.head_full && !data.is_empty() {
            let end = data
                .iter()
                .position(|b| *b == b'\n')
                .map_or(data.len(), |i| i + 1);
            let piece = &data[..end];
            if self.head.len() + piece.len() > LOG_HEAD_BYTES || self.head_lines >= LOG_HEAD_LINES {
                self.head_full = true;
                break;
            }
            self.head.extend_from_slice(piece);
            if piece.ends_with(b"\n") {
                self.head_lines += 1;
            }
            data = &data[end..];
        }
        for line in data.split_inclusive(|b| *b == b'\n') {
            let mut piece = line;
            while !piece.is_empty() {
                // continue an unfinished line's last segment, or start one
                let open = self
                    .tail
                    .back_mut()
                    .filter(|last| !last.ends_with(b"\n") && last.len() < SEGMENT);
                let n = match open {
                    Some(last) => {
                        let n = (SEGMENT - last.len()).min(piece.len());
                        last.extend_from_slice(&piece[..n]);
                        n
                    }
                    None => {
                        let n = SEGMENT.min(piece.len());
                        self.tail.push_back(piece[..n].to_vec());
                        n
                    }
                };
                self.tail_bytes += n;
                if piece[..n].ends_with(b"\n") {
                    self.tail_lines += 1;
                }
                piece = &piece[n..];
                self.evict();
            }
        }
    }

    fn evict(&mut self) {
        while self.tail_bytes > LOG_TAIL_BYTES || self.tail_lines > LOG_TAIL_LINES {
            let Some(front) = self.tail.pop_front() else {
                break;
            };
            self.drop_segment(&front);
        }
    }

    fn drop_segment(&mut self, segment: &[u8]) {
        self.tail_bytes -= segment.len();
        self.dropped_bytes += segment.len() as u64;
        if segment.ends_with(b"\n") {
            self.tail_lines -= 1;
            self.dropped_lines += 1;
            self.dropped_mid_line = false;
        } else {
            self.dropped_mid_line = true;
        }
    }

    /// Bytes and lines dropped so far.
    pub(crate) fn dropped(&self) -> (u64, u64) {
        (self.dropped_bytes, self.dropped_lines)
    }

    /// The kept output: head, a line saying what was dropped (if anything
    /// was), tail.
    pub(crate) fn finish(self) -> Vec<u8> {
        // When the cut fell inside a line, the tail starts with the rest of
        // it (the note says so): a giant last line keeps its end, which is
        // where Docker puts whatever followed it.
        let mut out = self.head;
        if self.dropped_bytes > 0 {
            if !out.is_empty() && !out.ends_with(b"\n") {
                out.push(b'\n');
            }
            out.extend_from_slice(
                format!(
                    "{LOG_DROPPED_MARKER}{} bytes of output ({} complete line(s)) dropped here{}: a job log keeps the first {} and the last {} of a job's output]\n",
                    self.dropped_bytes,
                    self.dropped_lines,
                    if self.dropped_mid_line {
                        "; the next line is the end of a longer one"
                    } else {
                        ""
                    },
                    human(LOG_HEAD_BYTES),
                    human(LOG_TAIL_BYTES),
                )
                .as_bytes(),
            );
        }
        for segment in self.tail {
            out.extend_from_slice(&segment);
        }
        out
    }
}

fn human(bytes: usize) -> String {
    format!("{} MiB", bytes / (1024 * 1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_output_is_kept_whole() {
        let mut log = CappedLog::default();
        log.push(b"a\nb");
        log.push(b"c\n");
        assert_eq!(log.finish(), b"a\nbc\n");
    }

    #[test]
    fn floods_keep_head_and_tail_within_the_caps() {
        // many short lines, then one giant line, then a last line, fed in odd chunks
        let mut input = Vec::new();
        for i in 0..300_000 {
            input.extend_from_slice(format!("line {i}\n").as_bytes());
        }
        input.extend(std::iter::repeat_n(b'x', 9 * 1024 * 1024));
        input.extend_from_slice(b"\nlast line\n");
        for chunk_size in [1usize, 7, 4096, 1 << 20] {
            let mut log = CappedLog::default();
            for chunk in input.chunks(chunk_size) {
                log.push(chunk);
            }
            let out = log.finish();
            assert!(out.len() <= LOG_HEAD_BYTES + LOG_TAIL_BYTES + 200);
            let text = String::from_utf8_lossy(&out);
            assert!(text.ends_with("\nlast line\n"), "{chunk_size}");
            assert!(text.contains(LOG_DROPPED_MARKER), "{chunk_size}");
            assert!(text.starts_with("line 0\nline 1\n"), "{chunk_size}");
            // every kept line is whole: the note sits on a line of its own
            let note = text.lines().find(|l| l.starts_with(LOG_DROPPED_MARKER));
            assert!(note.is_some_and(|n| n.ends_with(']')));
        }
    }
}
