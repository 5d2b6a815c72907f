//! Where an HTTP/1 connection's received bytes stand: inside a request head, a body, or between
//! requests. The connection watchdog (`server`) needs to know when a head starts and when it is
//! complete, whatever else is in flight: a head sent in the same packet as the request before it,
//! or while that request is served, sits in hyper's buffer where no later read reveals it. The
//! bytes are read as hyper reads them (`httparse`, hyper's own parser, for heads and chunk sizes);
//! anything this does not follow (HTTP/2, an upgrade, a malformed message hyper refuses) turns it
//! off, and the watchdog falls back to what it sees of reads.

/// What one delivery of bytes did to the head in progress.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Heads {
    /// A head started (its first byte arrived) and is not complete yet.
    pub started: bool,
    /// The head in progress (and every head in these bytes) is complete.
    pub completed: bool,
}

/// Most header fields hyper accepts in a head (its default); more is an error there as here.
const MAX_HEADERS: usize = 100;

#[derive(Debug)]
enum State {
    /// Between requests (empty) or inside a head: the head's bytes so far.
    Head(Vec<u8>),
    /// Content bytes of a `Content-Length` body still to come.
    Body(u64),
    /// A chunk-size line so far.
    ChunkSize(Vec<u8>),
    /// Chunk data still to come, with its closing CRLF.
    ChunkData(u64),
    /// The trailer section after the last chunk, so far.
    Trailers(Vec<u8>),
}

/// The HTTP/1 framing of one connection's received bytes; `None` once it cannot follow them.
#[derive(Debug)]
pub struct Framing {
    state: Option<State>,
    /// Request heads parsed whole: hyper accepted at least one HTTP/1 request when this is not
    /// zero, so a stop after it is not HTTP/2.
    heads_parsed: std::cell::Cell<u32>,
    /// The most bytes one head (or chunk line, or trailer section) may take: hyper refuses more.
    max_head: usize,
}

impl Framing {
    pub fn new(max_head: usize) -> Self {
        Self {
            state: Some(State::Head(Vec::new())),
            heads_parsed: std::cell::Cell::new(0),
            max_head,
        }
    }

    /// Whether the framing is still followed (false: HTTP/2, an upgrade, or a message hyper
    /// refuses).
    pub fn followed(&self) -> bool {
        self.state.is_some()
    }

    /// Whether an HTTP/1 request head was parsed whole (the connection speaks HTTP/1, whatever
    /// stopped the framing since: an upgrade, a chunk size hyper reads and `httparse` does not).
    pub fn spoke_http1(&self) -> bool {
        self.heads_parsed.get() > 0
    }

    /// Takes received bytes; what they did to heads.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Heads {
        let mut heads = Heads::default();
        while !bytes.is_empty() {
            let Some(state) = self.state.take() else {
                return heads;
            };
            let (next, used) = match state {
                State::Head(mut head) => {
                    let starting = head.is_empty();
                    let (next, used) = self.head(&mut head, bytes);
                    match &next {
                        // Partial: the parser keeps every byte it was given.
                        Some(State::Head(partial)) if !partial.is_empty() => {
                            heads.started |= starting;
                        }
                        // Complete (or not followed any more): nothing of it is pending.
                        _ => {
                            heads.started = false;
                            heads.completed = true;
                        }
                    }
                    (next, used)
                }
                State::Body(left) => {
                    let used = left.min(bytes.len() as u64);
                    let next = match left - used {
                        0 => State::Head(Vec::new()),
                        left => State::Body(left),
                    };
                    (Some(next), used as usize)
                }
                State::ChunkData(left) => {
                    let used = left.min(bytes.len() as u64);
                    let next = match left - used {
                        0 => State::ChunkSize(Vec::new()),
                        left => State::ChunkData(left),
                    };
                    (Some(next), used as usize)
                }
                State::ChunkSize(line) => self.chunk_size(line, bytes),
                State::Trailers(trailers) => self.trailers(trailers, bytes),
            };
            self.state = next;
            bytes = &bytes[used..];
        }
        heads
    }

    /// Appends `bytes` to `pending` (at most the limit) and runs `parse` over it: the bytes used
    /// from `bytes` once it completes, `Ok(None)` while it is partial.
    fn take_until<T>(
        &self,
        pending: &mut Vec<u8>,
        bytes: &[u8],
        parse: impl FnOnce(&[u8]) -> Result<httparse::Status<(usize, T)>, ()>,
    ) -> Result<Option<(usize, T)>, ()> {
        let before = pending.len();
        let take = bytes
            .len()
            .min(self.max_head + 1 - before.min(self.max_head));
        if before == 0 {
            // The usual case, a whole head (or line) in one read: parsed where it lies.
            return match parse(&bytes[..take])? {
                httparse::Status::Complete(done) => Ok(Some(done)),
                httparse::Status::Partial if take > self.max_head => Err(()),
                httparse::Status::Partial => {
                    pending.extend_from_slice(&bytes[..take]);
                    Ok(None)
                }
            };
        }
        pending.extend_from_slice(&bytes[..take]);
        match parse(pending)? {
            httparse::Status::Complete((end, value)) => {
                Ok(Some((end.saturating_sub(before), value)))
            }
            httparse::Status::Partial if pending.len() > self.max_head => Err(()),
            httparse::Status::Partial => Ok(None),
        }
    }

    fn head(&self, head: &mut Vec<u8>, bytes: &[u8]) -> (Option<State>, usize) {
        let parsed = self.take_until(head, bytes, |buf| {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut request = httparse::Request::new(&mut headers);
            let end = match request.parse(buf).map_err(|_| ())? {
                httparse::Status::Complete(end) => end,
                httparse::Status::Partial => return Ok(httparse::Status::Partial),
            };
            self.heads_parsed.set(self.heads_parsed.get() + 1);
            Ok(httparse::Status::Complete((end, body_of(&request)?)))
        });
        match parsed {
            Ok(Some((used, body))) => (Some(body), used),
            Ok(None) => (Some(State::Head(std::mem::take(head))), bytes.len()),
            Err(()) => (None, bytes.len()),
        }
    }

    fn chunk_size(&self, mut line: Vec<u8>, bytes: &[u8]) -> (Option<State>, usize) {
        let parsed = self.take_until(&mut line, bytes, |buf| {
            httparse::parse_chunk_size(buf).map_err(|_| ())
        });
        match parsed {
            Ok(Some((used, 0))) => (Some(State::Trailers(Vec::new())), used),
            Ok(Some((used, size))) => (size.checked_add(2).map(State::ChunkData), used),
            Ok(None) => (Some(State::ChunkSize(line)), bytes.len()),
            Err(()) => (None, bytes.len()),
        }
    }

    fn trailers(&self, mut trailers: Vec<u8>, bytes: &[u8]) -> (Option<State>, usize) {
        let parsed = self.take_until(&mut trailers, bytes, |buf| {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            match httparse::parse_headers(buf, &mut headers).map_err(|_| ())? {
                httparse::Status::Complete((end, _)) => Ok(httparse::Status::Complete((end, ()))),
                httparse::Status::Partial => Ok(httparse::Status::Partial),
            }
        });
        match parsed {
            Ok(Some((used, ()))) => (Some(State::Head(Vec::new())), used),
            Ok(None) => (Some(State::Trailers(trailers)), bytes.len()),
            Err(()) => (None, bytes.len()),
        }
    }
}

/// How a request's body is framed (RFC 9112 §6.3, as hyper reads a request): chunked when the
/// last transfer coding is `chunked`, else `Content-Length`, else none. What hyper refuses
/// (another final coding, differing lengths) or turns into another protocol (`CONNECT`, an
/// upgrade) is not followed.
fn body_of(request: &httparse::Request<'_, '_>) -> Result<State, ()> {
    if request.method == Some("CONNECT") {
        return Err(());
    }
    let mut chunked = None;
    let mut length: Option<u64> = None;
    for header in request.headers.iter() {
        let value = std::str::from_utf8(header.value).map_err(|_| ())?;
        if header.name.eq_ignore_ascii_case("transfer-encoding") {
            let last = value.rsplit(',').next().unwrap_or("").trim();
            chunked = Some(last.eq_ignore_ascii_case("chunked"));
        } else if header.name.eq_ignore_ascii_case("content-length") {
            for part in value.split(',') {
                let n: u64 = part.trim().parse().map_err(|_| ())?;
                if length.is_some_and(|seen| seen != n) {
                    return Err(());
                }
                length = Some(n);
            }
        } else if header.name.eq_ignore_ascii_case("upgrade") {
            return Err(());
        }
    }
    Ok(match (chunked, length) {
        (Some(true), _) => State::ChunkSize(Vec::new()),
        (Some(false), _) => return Err(()),
        (None, Some(n)) if n > 0 => State::Body(n),
        (None, _) => State::Head(Vec::new()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GET: &[u8] = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";

    fn fed(framing: &mut Framing, bytes: &[u8]) -> Heads {
        framing.feed(bytes)
    }

    #[test]
    fn a_head_starts_with_its_first_byte_and_completes_with_its_last() {
        let mut framing = Framing::new(16 * 1024);
        let (a, b) = GET.split_at(5);
        assert_eq!(
            fed(&mut framing, a),
            Heads {
                started: true,
                completed: false
            }
        );
        assert_eq!(
            fed(&mut framing, b),
            Heads {
                started: false,
                completed: true
            }
        );
        // Byte by byte: one start, one completion.
        let mut starts = 0;
        let mut completions = 0;
        for byte in GET {
            let heads = fed(&mut framing, std::slice::from_ref(byte));
            starts += usize::from(heads.started);
            completions += usize::from(heads.completed);
        }
        assert_eq!((starts, completions), (1, 1));
        assert!(framing.followed());
    }

    #[test]
    fn a_head_behind_a_whole_request_in_one_packet_is_pending() {
        for first in [
            GET.to_vec(),
            b"POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello".to_vec(),
            b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nT: 1\r\n\r\n"
                .to_vec(),
        ] {
            let mut framing = Framing::new(16 * 1024);
            let mut packet = first.clone();
            packet.extend_from_slice(b"GET /b HT");
            let heads = fed(&mut framing, &packet);
            assert!(heads.started, "{}", String::from_utf8_lossy(&first));
            assert!(framing.followed());
            assert!(fed(&mut framing, b"TP/1.1\r\n\r\n").completed);

            // The same request, split at every byte, then a whole second request: nothing pending.
            for split in 1..first.len() {
                let mut framing = Framing::new(16 * 1024);
                fed(&mut framing, &first[..split]);
                let mut rest = first[split..].to_vec();
                rest.extend_from_slice(GET);
                let heads = fed(&mut framing, &rest);
                assert!(heads.completed && !heads.started, "split at {split}");
            }
        }
    }

    #[test]
    fn body_bytes_that_look_like_a_head_are_body() {
        let mut framing = Framing::new(16 * 1024);
        fed(
            &mut framing,
            b"POST /a HTTP/1.1\r\nContent-Length: 9\r\n\r\n",
        );
        let heads = fed(&mut framing, b"GET / HTT");
        assert_eq!(heads, Heads::default());
        assert!(fed(&mut framing, b"G").started);
    }

    #[test]
    fn what_hyper_would_not_read_as_http1_turns_the_framing_off() {
        for bytes in [
            &b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"[..],
            b"CONNECT x:1 HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nUpgrade: h2c\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
        ] {
            let mut framing = Framing::new(16 * 1024);
            fed(&mut framing, bytes);
            assert!(!framing.followed(), "{}", String::from_utf8_lossy(bytes));
        }
        // A head longer than hyper buffers.
        let mut framing = Framing::new(64);
        fed(&mut framing, &[b'G'; 65]);
        assert!(!framing.followed());
    }
}
