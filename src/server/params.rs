//! Query strings (path parameters are decoded by the router).

use super::problem::query_problem;
use super::{Req, Resp};
use crate::query::QueryError;

/// The query string's pairs, decoded as `application/x-www-form-urlencoded`
/// (`+` is a space; a bad escape stays as written; not UTF-8: replaced).
pub(super) fn query_pairs(req: &Req) -> Vec<(String, String)> {
    form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .into_owned()
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
    fn query_strings_decode_as_forms() {
        let req: Req = hyper::Request::get("/v1/events?a=%20b+c&&d&e=%zz%4&f=%C3%A9&g=x=y")
            .body(axum::body::Body::empty())
            .unwrap();
        let pairs = query_pairs(&req);
        let pairs: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("a", " b c"),
                ("d", ""),
                ("e", "%zz%4"),
                ("f", "é"),
                ("g", "x=y")
            ]
        );
    }
}
