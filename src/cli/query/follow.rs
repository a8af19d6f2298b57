//! `stele query -f`: the last `-n` events, then the daemon's live stream
//! (`GET /v1/stream`, Server-Sent Events whose `id:` is the seq), resumed by
//! seq after every disconnect.
//!
//! No gap, no duplicate:
//! 1. The last events come from the listing in seq order (newest first,
//!    printed oldest first). The index lags the log, but only at its end
//!    (it indexes in seq order), so the stream started right after the
//!    newest seq the listing knows (or, when nothing matched, after the
//!    newest seq of any event) replays from the log whatever the index had
//!    not reached: every matching event after it, none before.
//! 2. Each reconnection asks for `from_seq` = the last seq printed + 1 (the
//!    server replays from the log), and an event at or below the last seq
//!    printed is never printed again, whatever the server sends.
//! 3. Reconnections back off from 200 ms to 5 s and go on until the daemon
//!    is back; only an answer that retrying cannot change (400, 401, 403,
//!    404, 410) ends the command.
//!
//! Ctrl-C and SIGTERM end it with exit 0 between two events: the signal
//! thread takes the stdout lock, so no event is cut in half.

use super::online::{refused, Answer, Client};
use super::output::Printer;
use super::{failed, output_error, Ask, Fail};
use std::io::{BufRead, Read, Write};
use std::time::Duration;

/// How long the stream may stay silent before the connection is taken for
/// dead: three of the server's heartbeats (every 15 s).
const STREAM_SILENCE_MAX: Duration = Duration::from_secs(45);
/// The first pause before reconnecting, doubled after each failure up to
/// [`RECONNECT_DELAY_MAX`].
const RECONNECT_DELAY_MIN: Duration = Duration::from_millis(200);
const RECONNECT_DELAY_MAX: Duration = Duration::from_secs(5);
/// The longest SSE line read (an event's JSON is at most a few times the
/// 256 KiB an event may encode to).
const SSE_LINE_BYTES_MAX: u64 = 8 * 1024 * 1024;

/// What one connection to the stream ended with.
enum Ended {
    /// The connection closed or failed: reconnect.
    Lost(String),
    /// The server refused the request: retrying cannot help.
    Refused(Fail),
}

pub(crate) fn follow<W: Write>(client: &Client, ask: &Ask, p: &mut Printer<W>) -> Result<(), Fail> {
    stop_on_signals()?;
    let mut last = print_last(client, ask, p)?;
    if last == 0 {
        last = newest_seq(client)?;
    }
    let agent = client.agent_with(STREAM_SILENCE_MAX);
    let mut delay = RECONNECT_DELAY_MIN;
    let mut lost = false;
    loop {
        let mut pairs = ask.pairs.clone();
        pairs.push(("from_seq".into(), (last + 1).to_string()));
        let ended = match client.get(&agent, "/v1/stream", &pairs, &[]) {
            Answer::Ok(body) => {
                if lost {
                    eprintln!("stele query: reconnected; resuming after seq {last}");
                    lost = false;
                }
                delay = RECONNECT_DELAY_MIN;
                read_stream(body, &mut last, p)?
            }
            Answer::Refused {
                status: Some(s @ (400 | 401 | 403 | 404 | 410)),
                message,
            } => Ended::Refused(refused(Some(s), message)),
            Answer::Refused { message, .. } => Ended::Lost(message),
        };
        match ended {
            Ended::Refused(f) => return Err(f),
            Ended::Lost(why) => {
                if !lost {
                    eprintln!(
                        "stele query: the stream was lost ({why}); reconnecting, to resume \
                         after seq {last}"
                    );
                    lost = true;
                }
                std::thread::sleep(delay);
                delay = (delay * 2).min(RECONNECT_DELAY_MAX);
            }
        }
    }
}

/// Prints the last `ask.count` matching events, oldest first; returns the
/// newest one's seq (0 when none).
fn print_last<W: Write>(client: &Client, ask: &Ask, p: &mut Printer<W>) -> Result<u64, Fail> {
    let mut newest_first = Vec::new();
    client.pages(ask, "seq", "desc", |ev| {
        newest_first.push(ev.get().to_string());
        Ok(())
    })?;
    let mut last = 0;
    for ev in newest_first.iter().rev() {
        last = last.max(seq_of(ev)?);
        p.event(ev).or_else(output_error)?;
    }
    p.flush().or_else(output_error)?;
    Ok(last)
}

/// The seq of the newest event the listing knows, whatever it matches (0
/// when there is none): where a stream with no event printed starts after.
fn newest_seq(client: &Client) -> Result<u64, Fail> {
    let ask = Ask {
        pairs: Vec::new(),
        sort: "seq",
        order: "desc",
        count: 1,
    };
    let mut seq = 0;
    client.pages(&ask, "seq", "desc", |ev| {
        seq = seq_of(ev.get())?;
        Ok(())
    })?;
    Ok(seq)
}

fn seq_of(json: &str) -> Result<u64, Fail> {
    #[derive(serde::Deserialize)]
    struct Seq {
        seq: u64,
    }
    serde_json::from_str::<Seq>(json)
        .map(|s| s.seq)
        .map_err(|e| failed(format!("the server sent an event without a seq: {e}")))
}

/// Reads one connection's events until it ends, printing each new one and
/// moving `last` on.
fn read_stream<W: Write>(
    body: ureq::Body,
    last: &mut u64,
    p: &mut Printer<W>,
) -> Result<Ended, Fail> {
    let mut reader = std::io::BufReader::new(body.into_reader());
    let mut line = Vec::new();
    let (mut id, mut kind, mut data) = (None::<u64>, String::new(), String::new());
    loop {
        line.clear();
        let n = match (&mut reader)
            .take(SSE_LINE_BYTES_MAX)
            .read_until(b'\n', &mut line)
        {
            Ok(0) => return Ok(Ended::Lost("the daemon closed the connection".into())),
            Ok(n) => n,
            Err(e) => return Ok(Ended::Lost(e.to_string())),
        };
        if line.last() != Some(&b'\n') {
            let why = if n as u64 >= SSE_LINE_BYTES_MAX {
                format!("a line longer than {SSE_LINE_BYTES_MAX} bytes")
            } else {
                "the connection ended within an event".into()
            };
            return Ok(Ended::Lost(why));
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end_matches(['\n', '\r']);
        if !text.is_empty() {
            // `field: value` (one optional space); comments start with ':'.
            let (field, value) = text.split_once(':').unwrap_or((text, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" => id = value.parse().ok(),
                "event" => kind = value.to_string(),
                "data" => {
                    if !data.is_empty() {
                        data.push('\n');
                    }
                    data.push_str(value);
                }
                _ => {}
            }
            continue;
        }
        // A blank line dispatches the event.
        let (seq, what, json) = (
            id.take(),
            std::mem::take(&mut kind),
            std::mem::take(&mut data),
        );
        match what.as_str() {
            "audit" => {
                let seq = match seq {
                    Some(s) => s,
                    None => seq_of(&json)?,
                };
                if seq <= *last {
                    continue; // already printed
                }
                p.event(&json).or_else(output_error)?;
                p.flush().or_else(output_error)?;
                *last = seq;
            }
            "error" => {
                let detail = serde_json::from_str::<serde_json::Value>(&json)
                    .ok()
                    .and_then(|v| v.get("detail")?.as_str().map(String::from))
                    .unwrap_or(json);
                return Ok(Ended::Lost(format!(
                    "the daemon stopped the stream: {detail}"
                )));
            }
            _ => {}
        }
    }
}

/// Ctrl-C (SIGINT) and SIGTERM end the command with exit 0, between two
/// events: the signal thread takes the stdout lock (which a printing event
/// holds for its whole line), flushes, and exits.
fn stop_on_signals() -> Result<(), Fail> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .map_err(|e| failed(format!("cannot handle Ctrl-C: {e}")))?;
    std::thread::Builder::new()
        .name("stele-query-signals".into())
        .spawn(move || {
            if signals.forever().next().is_some() {
                let mut out = std::io::stdout().lock();
                let _ = out.flush();
                std::process::exit(0);
            }
        })
        .map_err(|e| failed(format!("cannot handle Ctrl-C: {e}")))?;
    Ok(())
}
