//! The knowledge base (SPEC §7, issue 12): what a document is made of, how its text is taken
//! out (`extract`), cut into passages (`chunk`), indexed in the background (`ingest`), and
//! found again (`search`), also for the completions of an agent (`prompt`). Imports `model`,
//! `store` and `db`; never `api`.

pub mod chunk;
pub mod extract;
pub mod ingest;
pub mod prompt;
pub mod search;

use serde_json::Value;

use crate::error::{ApiError, ApiResult};

/// Bumped whenever extraction or chunking changes what a document's chunks would be.
pub const PIPELINE_VERSION: &str = "v1";

/// The formats a document may have. Decided from the bytes (`extract::sniff`), never from the
/// name or the declared type alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Markdown,
    Html,
    Pdf,
    Docx,
}

pub const DOCX_TYPE: &str = "application/vnd.openxmlformats-officedocument.wordprocessingml.document";

/// What a 415 names.
pub const ACCEPTED: &str = "plain text (text/plain), Markdown (text/markdown), HTML (text/html), \
                            PDF with a text layer (application/pdf), DOCX (application/vnd.openxmlformats-\
                            officedocument.wordprocessingml.document)";

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain",
            Format::Markdown => "text/markdown",
            Format::Html => "text/html",
            Format::Pdf => "application/pdf",
            Format::Docx => DOCX_TYPE,
        }
    }

    pub fn from_content_type(s: &str) -> Option<Format> {
        [Format::Text, Format::Markdown, Format::Html, Format::Pdf, Format::Docx]
            .into_iter()
            .find(|f| f.content_type() == s)
    }

    pub fn extension(self) -> &'static str {
        match self {
            Format::Text => "txt",
            Format::Markdown => "md",
            Format::Html => "html",
            Format::Pdf => "pdf",
            Format::Docx => "docx",
        }
    }
}

pub const TOP_K_DEFAULT: usize = 5;
pub const TOP_K_MAX: i64 = 20;
const SCOPE_IDS_MAX: usize = 100;

/// An agent config's `knowledge_base` (SPEC §7): `{enabled, project_ids?, document_ids?, top_k?}`.
/// Other keys are kept as they are and mean nothing here.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KnowledgeScope {
    pub enabled: bool,
    pub project_ids: Vec<String>,
    pub document_ids: Vec<String>,
    pub top_k: usize,
}

impl KnowledgeScope {
    /// Reads a stored `knowledge_base` object; what does not parse counts as disabled.
    pub fn from_stored(v: &Value) -> KnowledgeScope {
        parse_scope(v).map(|(s, _)| s).unwrap_or_default()
    }
}

/// Validates a `knowledge_base` object (JSON text, already known to be an object) and returns
/// the scope and the object to store, with ids in their canonical spelling.
pub fn parse_scope(v: &Value) -> ApiResult<(KnowledgeScope, Value)> {
    let mut out = v.clone();
    let Some(obj) = out.as_object_mut() else {
        return Err(ApiError::bad_request("knowledge_base must be a JSON object"));
    };
    let enabled = match obj.get("enabled") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::bad_request("knowledge_base.enabled must be true or false")),
    };
    let mut ids = |field: &str| -> ApiResult<Vec<String>> {
        let name = format!("knowledge_base.{field}");
        let list = match obj.get(field) {
            None | Some(Value::Null) => return Ok(vec![]),
            Some(Value::Array(a)) => a,
            Some(_) => return Err(ApiError::bad_request(format!("{name} must be an array of ids"))),
        };
        if list.len() > SCOPE_IDS_MAX {
            return Err(ApiError::bad_request(format!("{name} may name at most {SCOPE_IDS_MAX} ids")));
        }
        let mut parsed = vec![];
        for item in list {
            let id = item
                .as_str()
                .and_then(|s| uuid::Uuid::parse_str(s.trim()).ok())
                .map(|u| u.hyphenated().to_string())
                .ok_or_else(|| ApiError::bad_request(format!("{name} does not name an existing resource: {item}")))?;
            if !parsed.contains(&id) {
                parsed.push(id);
            }
        }
        obj.insert(field.to_string(), Value::from(parsed.clone()));
        Ok(parsed)
    };
    let project_ids = ids("project_ids")?;
    let document_ids = ids("document_ids")?;
    let top_k = match obj.get("top_k") {
        None | Some(Value::Null) => TOP_K_DEFAULT,
        Some(Value::Number(n)) if n.as_i64().is_some_and(|k| (1..=TOP_K_MAX).contains(&k)) => {
            n.as_i64().unwrap_or_default() as usize
        }
        Some(_) => {
            return Err(ApiError::bad_request(format!(
                "knowledge_base.top_k must be an integer between 1 and {TOP_K_MAX}"
            )));
        }
    };
    Ok((KnowledgeScope { enabled, project_ids, document_ids, top_k }, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn knowledge_scope_is_validated() {
        let id = uuid::Uuid::now_v7().to_string();
        let (s, stored) = parse_scope(&json!({"enabled": true, "document_ids": [id.to_uppercase()], "x": 1})).unwrap();
        assert!(s.enabled);
        assert_eq!(s.document_ids, vec![id.clone()]);
        assert_eq!(s.top_k, TOP_K_DEFAULT);
        assert_eq!(stored["document_ids"], json!([id]));
        assert_eq!(stored["x"], 1);
        assert!(!parse_scope(&json!({})).unwrap().0.enabled);
        for (bad, field) in [
            (json!({"enabled": "yes"}), "enabled"),
            (json!({"top_k": 0}), "top_k"),
            (json!({"top_k": 21}), "top_k"),
            (json!({"top_k": 2.5}), "top_k"),
            (json!({"project_ids": "p"}), "project_ids"),
            (json!({"project_ids": ["nope"]}), "project_ids"),
        ] {
            let e = parse_scope(&bad).unwrap_err();
            assert!(e.status == 400 && e.detail.contains(field), "{bad}: {}", e.detail);
        }
    }
}
