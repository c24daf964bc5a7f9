//! The query path shared by `/knowledge/search` and completions: user text becomes a safe FTS5
//! query, and BM25 ranks the chunks of the caller's organization (in the same WHERE clause as
//! the match, so it applies before the LIMIT).

use rusqlite::Connection;

use crate::{
    api::knowledge::Passage,
    error::ApiResult,
    store::documents::{SearchScope, search_chunks},
};

/// Every token quoted (so `multi-agent`, `don't`, `NOT`, `*` and `(` are words, not syntax) and
/// ORed (a question ANDed finds nothing). `None` when no searchable word is left.
pub fn fts5_query(q: &str) -> Option<String> {
    let q: String = q.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let tokens: Vec<String> = q
        .split_whitespace()
        .filter(|t| t.chars().any(char::is_alphanumeric))
        .take(32)
        .map(|t| format!("\"{}\"", t.replace('"', "\"\"")))
        .collect();
    (!tokens.is_empty()).then(|| tokens.join(" OR "))
}

/// The best `limit` passages for `q` within `scope`, best first.
pub fn search(conn: &Connection, scope: &SearchScope<'_>, q: &str, limit: usize) -> ApiResult<Vec<Passage>> {
    match fts5_query(q) {
        Some(fts) => search_chunks(conn, scope, &fts, limit),
        None => Ok(vec![]),
    }
}

#[cfg(test)]
mod tests {
    use super::fts5_query;

    #[test]
    fn user_text_cannot_break_the_query() {
        assert_eq!(
            fts5_query("What is the vacation policy?").unwrap(),
            r#""What" OR "is" OR "the" OR "vacation" OR "policy?""#
        );
        assert_eq!(fts5_query(r#"multi-agent "x"#).unwrap(), r#""multi-agent" OR """x""#);
        assert_eq!(fts5_query("* ( ) \" 🎉"), None);
        assert_eq!(fts5_query("  \n\0 "), None);
    }
}
