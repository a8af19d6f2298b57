//! Query strings and path parameters.

use super::problem::query_problem;
use super::Resp;
use crate::query::QueryError;
use hyper::body::Incoming;
use hyper::Request;

/// Decodes `%XX` escapes (and `+` as a space in query strings).
pub(super) fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(if plus_is_space && b[i] == b'+' {
            b' '
        } else {
            b[i]
        });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(super) fn query_pairs(req: &Request<Incoming>) -> Vec<(String, String)> {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect()
}

/// 400 naming the first of `names` present in `pairs`.
pub(super) fn reject_params(pairs: &[(String, String)], names: &[&str], why: &str) -> Option<Resp> {
    pairs
        .iter()
        .find(|(k, _)| names.contains(&k.as_str()))
        .map(|(k, _)| {
            query_problem(QueryError::BadParam {
                param: k.clone(),
                message: why.into(),
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b+c", true), "a b c");
        assert_eq!(percent_decode("a%20b+c", false), "a b+c");
        assert_eq!(percent_decode("%zz%4", true), "%zz%4");
        assert_eq!(percent_decode("%C3%A9", false), "é");
    }
}
