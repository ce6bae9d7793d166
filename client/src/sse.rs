//! A server-sent events parser (the `text/event-stream` format of the HTML
//! standard): bytes in, events out, whatever the chunking.
//!
//! Lines end in LF, CRLF or a lone CR, and a chunk may end anywhere — inside
//! a line, between the CR and LF of a CRLF, inside a UTF-8 character. A
//! blank line dispatches the event gathered so far; `data:` lines are joined
//! with `\n`; lines starting with `:` are comments (keep-alives); one space
//! after the colon is dropped. Lines and events have a maximum size, since
//! the server is not trusted.

/// Longest line the parser buffers.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;

/// The UTF-8 byte-order mark.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Largest `data` of one event.
pub const MAX_EVENT_BYTES: usize = 4 * 1024 * 1024;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// `event:`, or `message` when the event named none.
    pub event: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// The last `id:` seen on the stream so far (it carries over events).
    pub id: Option<String>,
}

/// The stream broke the size limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// A line longer than [`MAX_LINE_BYTES`].
    #[error("an event-stream line exceeds {MAX_LINE_BYTES} bytes")]
    LineTooLong,
    /// An event whose data exceeds [`MAX_EVENT_BYTES`].
    #[error("an event's data exceeds {MAX_EVENT_BYTES} bytes")]
    EventTooLarge,
}

/// Incremental parser state; feed it with [`SseParser::push`].
#[derive(Debug, Default, Clone)]
pub struct SseParser {
    /// The current, unfinished line.
    line: Vec<u8>,
    /// The previous chunk ended in CR: a leading LF belongs to it.
    after_cr: bool,
    /// No byte seen yet (a leading BOM is dropped).
    started: bool,
    event: Option<String>,
    data: String,
    has_data: bool,
    last_id: Option<String>,
}

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// The last `id:` seen, for `Last-Event-ID` on reconnect.
    pub fn last_event_id(&self) -> Option<&str> {
        self.last_id.as_deref()
    }

    /// Parses `chunk`, appending every event it completes to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        if self.started {
            return self.feed(chunk, out);
        }
        // A leading byte-order mark is dropped; it may itself be split.
        self.line.extend_from_slice(chunk);
        if self.line.len() < BOM.len() && BOM.starts_with(&self.line) {
            return Ok(());
        }
        self.started = true;
        let mut held = std::mem::take(&mut self.line);
        if held.starts_with(BOM) {
            held.drain(..BOM.len());
        }
        self.feed(&held, out)
    }

    fn feed(&mut self, mut chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        if self.after_cr && !chunk.is_empty() {
            self.after_cr = false;
            if chunk[0] == b'\n' {
                chunk = &chunk[1..];
            }
        }
        while let Some(end) = chunk.iter().position(|&b| b == b'\n' || b == b'\r') {
            if self.line.len() + end > MAX_LINE_BYTES {
                return Err(SseError::LineTooLong);
            }
            self.line.extend_from_slice(&chunk[..end]);
            let line = std::mem::take(&mut self.line);
            self.line_done(&line, out)?;
            let cr = chunk[end] == b'\r';
            chunk = &chunk[end + 1..];
            if cr {
                match chunk.first() {
                    Some(b'\n') => chunk = &chunk[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
        }
        if self.line.len() + chunk.len() > MAX_LINE_BYTES {
            return Err(SseError::LineTooLong);
        }
        self.line.extend_from_slice(chunk);
        Ok(())
    }

    fn line_done(&mut self, line: &[u8], out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        if line.is_empty() {
            self.dispatch(out);
            return Ok(());
        }
        if line[0] == b':' {
            return Ok(());
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        match field {
            "event" => self.event = Some(value.to_string()),
            "data" => {
                if self.data.len() + value.len() + 1 > MAX_EVENT_BYTES {
                    return Err(SseError::EventTooLarge);
                }
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "id" if !value.contains('\0') => self.last_id = Some(value.to_string()),
            // `retry` and unknown fields are ignored.
            _ => {}
        }
        Ok(())
    }

    fn dispatch(&mut self, out: &mut Vec<SseEvent>) {
        let event = self.event.take();
        if !self.has_data {
            return;
        }
        self.has_data = false;
        out.push(SseEvent {
            event: event
                .filter(|e| !e.is_empty())
                .unwrap_or_else(|| "message".into()),
            data: std::mem::take(&mut self.data),
            id: self.last_id.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn parse_chunks(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut parser = SseParser::new();
        let mut out = Vec::new();
        for chunk in chunks {
            parser.push(chunk, &mut out).unwrap();
        }
        out
    }

    fn ev(event: &str, data: &str, id: Option<&str>) -> SseEvent {
        SseEvent {
            event: event.into(),
            data: data.into(),
            id: id.map(str::to_string),
        }
    }

    const STREAM: &str = "\u{feff}: keep-alive\r\n\
        id: 1\r\nevent: stdout\r\ndata: {\"a\":1}\r\n\r\n\
        id: 2\nevent:stderr\ndata: line one\ndata:line two\ndata\n\n\
        : comment\r\rid: 3\revent: end\rdata: {}\r\r\
        data: no id change\n\n\
        event: ignored-no-data\n\n";

    fn expected() -> Vec<SseEvent> {
        vec![
            ev("stdout", "{\"a\":1}", Some("1")),
            ev("stderr", "line one\nline two\n", Some("2")),
            ev("end", "{}", Some("3")),
            ev("message", "no id change", Some("3")),
        ]
    }

    #[test]
    fn fields_comments_and_every_line_ending() {
        assert_eq!(parse_chunks(&[STREAM.as_bytes()]), expected());
    }

    #[test]
    fn every_single_split_point_gives_the_same_events() {
        let bytes = STREAM.as_bytes();
        for at in 0..=bytes.len() {
            let (a, b) = bytes.split_at(at);
            assert_eq!(parse_chunks(&[a, b]), expected(), "split at {at}");
        }
    }

    #[test]
    fn byte_by_byte() {
        let chunks: Vec<&[u8]> = STREAM.as_bytes().chunks(1).collect();
        assert_eq!(parse_chunks(&chunks), expected());
    }

    #[test]
    fn a_split_utf8_character_survives() {
        let text = "data: héllo → wörld\n\n".as_bytes();
        for at in 0..=text.len() {
            let (a, b) = text.split_at(at);
            assert_eq!(
                parse_chunks(&[a, b]),
                [ev("message", "héllo → wörld", None)]
            );
        }
    }

    #[test]
    fn an_unfinished_event_is_not_dispatched() {
        assert!(parse_chunks(&[b"id: 1\nevent: stdout\ndata: x\n"]).is_empty());
    }

    #[test]
    fn an_endless_line_is_refused() {
        let mut parser = SseParser::new();
        let mut out = Vec::new();
        let big = vec![b'x'; MAX_LINE_BYTES / 2 + 1];
        parser.push(b"data: ", &mut out).unwrap();
        parser.push(&big, &mut out).unwrap();
        assert_eq!(parser.push(&big, &mut out), Err(SseError::LineTooLong));
    }

    proptest! {
        #[test]
        fn any_chunking_gives_the_same_events(cuts in proptest::collection::vec(0usize..400, 0..12)) {
            let bytes = STREAM.as_bytes();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (bytes.len() + 1)).collect();
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut start = 0;
            for cut in cuts {
                chunks.push(&bytes[start..cut]);
                start = cut;
            }
            chunks.push(&bytes[start..]);
            prop_assert_eq!(parse_chunks(&chunks), expected());
        }

        #[test]
        fn arbitrary_data_round_trips(
            lines in proptest::collection::vec("[^\r\n]{0,20}", 1..5),
            cut in 0usize..200,
        ) {
            let data = lines.join("\n");
            let mut wire = String::new();
            for line in &lines {
                wire.push_str("data: ");
                wire.push_str(line);
                wire.push_str("\r\n");
            }
            wire.push_str("\r\n");
            let bytes = wire.as_bytes();
            let (a, b) = bytes.split_at(cut.min(bytes.len()));
            prop_assert_eq!(parse_chunks(&[a, b]), vec![ev("message", &data, None)]);
        }
    }
}
