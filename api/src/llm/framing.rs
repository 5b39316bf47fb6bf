//! Splits a streamed response body into frames: one JSON document per line
//! (Ollama's NDJSON) or one server-sent event (`text/event-stream`, OpenAI
//! and Anthropic). Bytes arrive in arbitrary pieces; a frame is handed on
//! only once it is complete.
//!
//! Every frame is bounded by [`MAX_FRAME_BYTES`]: a server that never ends a
//! line cannot make us buffer without end. The SSE side is strict about field
//! names, so a body that is not an event stream at all (an HTML error page, a
//! proxy's banner) is reported as such instead of being silently skipped.

use super::LlmError;

/// Longest line, or longest event payload, accepted from a provider. Real
/// frames are a few hundred bytes; this leaves room for a large single
/// delta while bounding memory per call.
pub(crate) const MAX_FRAME_BYTES: usize = 256 * 1024;

/// How a provider frames its stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// One JSON document per line.
    Ndjson,
    /// Server-sent events: `event:` and `data:` lines, a blank line ends an event.
    Sse,
}

/// One complete frame: an NDJSON line (`event` is `None`) or an SSE event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Frame {
    /// The SSE `event:` name, when the server sent one.
    pub event: Option<String>,
    /// The line, or the event's `data:` lines joined by `\n`.
    pub data: String,
}

/// Turns body bytes into frames.
pub(crate) struct FrameReader {
    framing: Framing,
    lines: LineSplitter,
    event: Option<String>,
    data: Option<String>,
}

impl FrameReader {
    pub(crate) fn new(framing: Framing) -> Self {
        Self {
            framing,
            lines: LineSplitter::default(),
            event: None,
            data: None,
        }
    }

    /// Takes the next piece of the body; returns the frames it completed.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Result<Vec<Frame>, LlmError> {
        let mut frames = Vec::new();
        for line in self.lines.push(bytes)? {
            self.line(&line, &mut frames)?;
        }
        Ok(frames)
    }

    /// The body ended: returns a last frame that lacked its final newline.
    pub(crate) fn finish(&mut self) -> Result<Vec<Frame>, LlmError> {
        let mut frames = Vec::new();
        if let Some(line) = self.lines.finish()? {
            self.line(&line, &mut frames)?;
        }
        // An event cut before its blank line still counts: the decoder, not
        // the framing, decides whether the answer was complete.
        if let Some(data) = self.data.take() {
            frames.push(Frame {
                event: self.event.take(),
                data,
            });
        }
        Ok(frames)
    }

    fn line(&mut self, line: &str, frames: &mut Vec<Frame>) -> Result<(), LlmError> {
        match self.framing {
            Framing::Ndjson => {
                let line = line.trim();
                if !line.is_empty() {
                    frames.push(Frame {
                        event: None,
                        data: line.to_owned(),
                    });
                }
                Ok(())
            }
            Framing::Sse => self.sse_line(line, frames),
        }
    }

    fn sse_line(&mut self, line: &str, frames: &mut Vec<Frame>) -> Result<(), LlmError> {
        if line.is_empty() {
            match self.data.take() {
                Some(data) => frames.push(Frame {
                    event: self.event.take(),
                    data,
                }),
                None => self.event = None,
            }
            return Ok(());
        }
        if line.starts_with(':') {
            return Ok(()); // a comment, often a keep-alive
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "data" => {
                let len = self.data.as_ref().map_or(0, |d| d.len() + 1) + value.len();
                if len > MAX_FRAME_BYTES {
                    return Err(frame_too_long());
                }
                match &mut self.data {
                    // Several `data:` lines of one event are joined by newlines.
                    Some(data) => {
                        data.push('\n');
                        data.push_str(value);
                    }
                    None => self.data = Some(value.to_owned()),
                }
                Ok(())
            }
            "event" => {
                self.event = Some(value.to_owned());
                Ok(())
            }
            "id" | "retry" => Ok(()),
            _ => Err(LlmError::BadResponse(
                "the body is not an event stream".into(),
            )),
        }
    }
}

/// Cuts bytes into UTF-8 lines (`\n` or `\r\n`), each at most [`MAX_FRAME_BYTES`].
#[derive(Default)]
struct LineSplitter {
    buf: Vec<u8>,
}

impl LineSplitter {
    fn push(&mut self, bytes: &[u8]) -> Result<Vec<String>, LlmError> {
        let searched = self.buf.len();
        self.buf.extend_from_slice(bytes);
        let mut lines = Vec::new();
        let mut start = 0;
        // Only the new bytes can hold a newline: the old ones were searched.
        let mut from = searched;
        while let Some(pos) = self.buf[from..].iter().position(|&b| b == b'\n') {
            let end = from + pos;
            lines.push(utf8_line(&self.buf[start..end])?);
            start = end + 1;
            from = start;
        }
        self.buf.drain(..start);
        if self.buf.len() > MAX_FRAME_BYTES {
            return Err(frame_too_long());
        }
        Ok(lines)
    }

    fn finish(&mut self) -> Result<Option<String>, LlmError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let line = utf8_line(&self.buf)?;
        self.buf.clear();
        Ok(Some(line))
    }
}

fn utf8_line(bytes: &[u8]) -> Result<String, LlmError> {
    if bytes.len() > MAX_FRAME_BYTES {
        return Err(frame_too_long());
    }
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Ok(line) => Ok(line.to_owned()),
        Err(_) => Err(LlmError::BadResponse("the body is not UTF-8 text".into())),
    }
}

fn frame_too_long() -> LlmError {
    LlmError::BadResponse(format!("a frame is longer than {MAX_FRAME_BYTES} bytes"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn event(name: Option<&str>, data: &str) -> Frame {
        Frame {
            event: name.map(str::to_owned),
            data: data.to_owned(),
        }
    }

    #[test]
    fn sse_events_split_across_pieces() {
        let mut reader = FrameReader::new(Framing::Sse);
        let body = "event: a\r\ndata: {\"x\":\ndata: 1}\r\n\r\n: keep-alive\n\ndata:[DONE]\n\n";
        let mut frames = Vec::new();
        for piece in body.as_bytes().chunks(3) {
            frames.extend(reader.push(piece).unwrap());
        }
        frames.extend(reader.finish().unwrap());
        assert_eq!(
            frames,
            vec![event(Some("a"), "{\"x\":\n1}"), event(None, "[DONE]")]
        );
    }

    #[test]
    fn ndjson_lines_and_a_last_line_without_newline() {
        let mut reader = FrameReader::new(Framing::Ndjson);
        let mut frames = reader.push(b"{\"a\":1}\n\n{\"b\"").unwrap();
        frames.extend(reader.push(b":2}").unwrap());
        frames.extend(reader.finish().unwrap());
        assert_eq!(
            frames,
            vec![event(None, "{\"a\":1}"), event(None, "{\"b\":2}")]
        );
    }

    #[test]
    fn a_line_that_never_ends_is_refused() {
        let mut reader = FrameReader::new(Framing::Ndjson);
        let piece = vec![b'x'; 64 * 1024];
        let mut result = Ok(Vec::new());
        for _ in 0..8 {
            result = reader.push(&piece);
            if result.is_err() {
                break;
            }
        }
        assert!(matches!(result, Err(LlmError::BadResponse(_))));
    }

    #[test]
    fn html_is_not_an_event_stream() {
        let mut reader = FrameReader::new(Framing::Sse);
        assert!(matches!(
            reader.push(b"<html><body>502 Bad Gateway</body></html>\n"),
            Err(LlmError::BadResponse(_))
        ));
    }

    #[test]
    fn multibyte_text_split_between_pieces() {
        let mut reader = FrameReader::new(Framing::Ndjson);
        let text = "{\"t\":\"héllo ✓\"}\n".as_bytes();
        let mut frames = reader.push(&text[..8]).unwrap();
        frames.extend(reader.push(&text[8..]).unwrap());
        assert_eq!(frames, vec![event(None, "{\"t\":\"héllo ✓\"}")]);
    }
}
