//! What the local proxy's hand-written HTTP/1 path reads from the network
//! (`src/platform/local/proxy_h1.rs`, `h1_framing.rs`): a request head and a response head
//! as `httparse` parses them, then the framing the proxy derives from them (body length,
//! chunked, keep-alive, 100-continue, hop-by-hop fields, the origin-form target), and the
//! streaming chunked decoder. The first byte chooses the piece size the decoder is fed in:
//! the body's end and its data must not depend on where reads split it.
#![no_main]

use cutover::platform::local::h1_framing::{
    Chunked, MAX_HEADERS, field, named_by_connection, origin_form, request_framing,
    response_framing,
};
use libfuzzer_sys::fuzz_target;

/// Feed `input` in pieces of `piece` bytes; (bytes used, data, done) or the error.
fn decode(input: &[u8], piece: usize) -> Result<(usize, Vec<u8>, bool), String> {
    let mut c = Chunked::new();
    let mut data = Vec::new();
    let mut used = 0;
    for part in input.chunks(piece.max(1)) {
        let n = c
            .feed(part, |d| data.extend_from_slice(d))
            .map_err(|e| e.to_string())?;
        assert!(n <= part.len());
        used += n;
        if c.is_done() {
            break;
        }
        assert_eq!(n, part.len(), "an unfinished body uses every byte it is given");
    }
    assert!(data.len() <= used);
    Ok((used, data, c.is_done()))
}

fuzz_target!(|bytes: &[u8]| {
    let Some((&first, data)) = bytes.split_first() else {
        return;
    };

    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    if let Ok(httparse::Status::Complete(n)) = req.parse(data) {
        assert!(n <= data.len());
        let version = req.version.unwrap_or(1);
        if let Ok(f) = request_framing(version, req.headers) {
            for h in req.headers.iter() {
                let _ = field(h.name);
                if f.connection_names_others {
                    let _ = named_by_connection(req.headers, h.name);
                }
            }
        }
        if let Some(path) = req.path {
            let o = origin_form(path);
            assert!(path.ends_with(o));
        }
    }

    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    if let Ok(httparse::Status::Complete(_)) = resp.parse(data) {
        let status = resp.code.unwrap_or(0);
        let _ = response_framing(resp.version.unwrap_or(1), status, first & 1 == 1, resp.headers);
    }

    let whole = decode(data, data.len());
    let pieces = decode(data, usize::from(first % 17) + 1);
    match (&whole, &pieces) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "the same body whatever the read sizes"),
        (Err(_), Err(_)) => {}
        // An error may lie past the end of a body only when nothing is read past it.
        _ => panic!("whole {whole:?} vs pieces {pieces:?}"),
    }
});
