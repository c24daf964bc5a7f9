//! `/documents`: the knowledge base's documents (SPEC §7). Uploads are sniffed and checked for
//! text at once; chunking and indexing run in the background (`knowledge::ingest`).

use poem::{IntoResponse, Response};
use poem_openapi::{
    ApiRequest, ApiResponse, Enum, Multipart, Object, OpenApi,
    param::{Path, Query},
    payload::{Json, Payload},
    registry::{MetaSchema, MetaSchemaRef},
    types::multipart::Upload,
};
use sha2::{Digest, Sha256};

pub use crate::model::documents::{Chunk, Document};
use crate::{
    AppState,
    api::{ApiTags, Created, Deleted},
    auth::BearerAuth,
    authz::{self, Permission},
    db::{self, new_id, now},
    error::{ApiError, ApiResult},
    knowledge::{Format, extract, ingest},
    pagination::{ListResponse, Page, search_term},
    store::{self, audit::Event, documents::DocumentFilter},
    validate::{self, Text},
};

#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
pub enum DocumentStatus {
    Pending,
    Processing,
    Ready,
    Failed,
}

impl DocumentStatus {
    fn as_str(self) -> &'static str {
        match self {
            DocumentStatus::Pending => "pending",
            DocumentStatus::Processing => "processing",
            DocumentStatus::Ready => "ready",
            DocumentStatus::Failed => "failed",
        }
    }
}

/// A file upload.
#[derive(Multipart, Debug)]
pub struct UploadDocument {
    /// The file: plain text, Markdown, HTML, PDF (with a text layer) or DOCX
    pub file: Upload,
    /// Default: the file's name
    pub title: Option<String>,
    /// A project of the caller's organization
    pub project_id: Option<String>,
    /// A JSON object, as text
    pub metadata: Option<String>,
}

/// A document given as text.
#[derive(Object, Debug)]
pub struct CreateDocumentRequest {
    /// Required, 1..=255 characters
    #[oai(skip_serializing_if_is_none)]
    pub title: Option<Text>,
    /// Required, not empty
    #[oai(skip_serializing_if_is_none)]
    pub content: Option<Text>,
    /// `text/plain` (default), `text/markdown` or `text/html`
    #[oai(skip_serializing_if_is_none)]
    pub content_type: Option<Text>,
    /// A project of the caller's organization
    #[oai(skip_serializing_if_is_none)]
    pub project_id: Option<Text>,
    /// A JSON object
    #[oai(skip_serializing_if_is_none)]
    pub metadata: Option<serde_json::Value>,
}

#[derive(ApiRequest, Debug)]
pub enum CreateDocument {
    /// `multipart/form-data` with `file` and optional `title`, `project_id`, `metadata`
    Multipart(UploadDocument),
    /// `{title, content, content_type?, project_id?, metadata?}`
    Json(Json<CreateDocumentRequest>),
}

/// The original bytes of a document, with their own content type.
pub struct FileBytes {
    content_type: String,
    bytes: Vec<u8>,
}

impl Payload for FileBytes {
    const CONTENT_TYPE: &'static str = "application/octet-stream";

    fn check_content_type(_: &str) -> bool {
        true
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema { format: Some("binary"), ..MetaSchema::new("string") }))
    }
}

impl IntoResponse for FileBytes {
    fn into_response(self) -> Response {
        Response::builder().content_type(self.content_type).body(self.bytes)
    }
}

#[derive(ApiResponse)]
pub enum FileResponse {
    /// The original bytes, in the document's content type
    #[oai(status = 200)]
    File(FileBytes, #[oai(header = "Content-Disposition")] String),
}

#[derive(ApiResponse)]
pub enum Accepted {
    /// Queued for ingestion
    #[oai(status = 202)]
    Accepted(Json<Document>),
}

pub struct DocumentsApi {
    pub state: AppState,
}

/// An upload, whichever way it came.
struct Incoming {
    bytes: Vec<u8>,
    filename: Option<String>,
    declared: Option<String>,
    title: Option<String>,
    project_id: Option<String>,
    metadata: Option<serde_json::Value>,
}

#[OpenApi(tag = "ApiTags::Documents")]
impl DocumentsApi {
    /// List documents
    ///
    /// Needs `agents:read`. Documents of the caller's organization (a superuser: of all, unless
    /// `organization_id` narrows it), newest first; `search` looks in title and filename.
    #[oai(path = "/documents", method = "get")]
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        auth: BearerAuth,
        skip: Query<Option<i64>>,
        limit: Query<Option<i64>>,
        search: Query<Option<String>>,
        project_id: Query<Option<String>>,
        status: Query<Option<DocumentStatus>>,
        organization_id: Query<Option<String>>,
    ) -> ApiResult<Json<ListResponse<Document>>> {
        let scope = authz::require(&auth.0, Permission::AgentsRead)?
            .narrowed(validate::filter_id(organization_id.0).as_deref())?;
        let page = Page::new(skip.0, limit.0)?;
        let filter = DocumentFilter {
            search: search_term(search.0),
            project_id: validate::filter_id(project_id.0),
            status: status.0.map(DocumentStatus::as_str),
        };
        let (rows, total) =
            self.state.store.read(move |c| store::documents::list_documents(c, &scope, &filter, page)).await?;
        Ok(Json(page.wrap(rows, total)))
    }

    /// Upload a document
    ///
    /// Needs `agents:write`. `multipart/form-data` with `file` (and optional `title`,
    /// `project_id`, `metadata` as JSON text), or JSON `{title, content, content_type?,
    /// project_id?, metadata?}`. The type is sniffed from the bytes: plain text, Markdown, HTML,
    /// PDF (text layer) or DOCX, else 415. Over `[knowledge] max_document_mb` → 413; no
    /// extractable text → 400; the same bytes in the same organization and project → 409 naming
    /// the existing document. Answers 201 with the `pending` document; ingestion follows in the
    /// background.
    #[oai(path = "/documents", method = "post")]
    async fn create(&self, auth: BearerAuth, body: CreateDocument) -> ApiResult<Created<Document>> {
        authz::require(&auth.0, Permission::AgentsWrite)?;
        let max = self.state.config.knowledge.max_document_bytes();
        let too_large = || {
            ApiError::new(
                poem::http::StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "The document is larger than the limit of {} MB ([knowledge] max_document_mb)",
                    self.state.config.knowledge.max_document_mb
                ),
            )
        };
        let incoming = match body {
            CreateDocument::Multipart(form) => {
                if form.file.size() > max {
                    return Err(too_large());
                }
                let filename = form.file.file_name().map(str::to_string);
                let declared = form.file.content_type().map(str::to_string);
                let bytes = form.file.into_vec().await.map_err(ApiError::internal)?;
                let metadata = match form.metadata.as_deref().map(str::trim).filter(|m| !m.is_empty()) {
                    None => None,
                    Some(text) => Some(
                        serde_json::from_str::<serde_json::Value>(text)
                            .map_err(|_| ApiError::bad_request("metadata must be a JSON object"))?,
                    ),
                };
                Incoming { bytes, filename, declared, title: form.title, project_id: form.project_id, metadata }
            }
            CreateDocument::Json(Json(b)) => {
                let declared = match b.content_type.as_ref().map(|t| t.trim()) {
                    None | Some("") => Format::Text,
                    Some("text/plain") => Format::Text,
                    Some("text/markdown") => Format::Markdown,
                    Some("text/html") => Format::Html,
                    Some(other) => {
                        return Err(ApiError::bad_request(format!(
                            "content_type must be text/plain, text/markdown or text/html, not {other:?}"
                        )));
                    }
                };
                let title = b.title.ok_or_else(|| ApiError::bad_request("title is required"))?;
                let content = b.content.ok_or_else(|| ApiError::bad_request("content is required"))?;
                if content.trim().is_empty() {
                    return Err(ApiError::bad_request("content must not be empty"));
                }
                if content.len() > max {
                    return Err(too_large());
                }
                Incoming {
                    bytes: content.0.into_bytes(),
                    filename: None,
                    declared: Some(declared.content_type().to_string()),
                    title: Some(validate::name("title", &title)?),
                    project_id: b.project_id.map(|p| p.0),
                    metadata: b.metadata,
                }
            }
        };
        if incoming.bytes.len() > max {
            return Err(too_large());
        }
        let format = extract::sniff(&incoming.bytes, incoming.filename.as_deref(), incoming.declared.as_deref())
            .ok_or_else(|| {
                ApiError::new(
                    poem::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    format!("This type of file cannot be read. Accepted: {}", crate::knowledge::ACCEPTED),
                )
            })?;
        let filename = filename(incoming.filename.as_deref(), incoming.title.as_deref(), format)?;
        let title = match incoming.title.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
            Some(t) => validate::name("title", t)?,
            None => filename.clone(),
        };
        let project_id = incoming
            .project_id
            .as_deref()
            .filter(|p| !p.trim().is_empty())
            .map(|p| validate::body_id("project_id", p))
            .transpose()?;
        let metadata = validate::json_object("metadata", incoming.metadata)?;
        let bytes = incoming.bytes;
        // extraction runs here once so that a file without text is refused at once; the worker
        // extracts again (nothing extracted is stored, so a restart can redo it)
        let (bytes, sha256) = db::blocking(move || {
            let extracted = extract::extract(format, &bytes).map_err(ApiError::bad_request)?;
            if !extracted.has_text() {
                return Err(ApiError::bad_request(ingest::no_text_error(format)));
            }
            let sha256: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
            Ok((bytes, sha256))
        })
        .await?;
        let (organization_id, actor) = (auth.0.home_org().to_string(), auth.0.actor());
        let new = store::documents::NewDocument {
            id: new_id(),
            organization_id: organization_id.clone(),
            project_id,
            title,
            filename,
            content_type: format.content_type(),
            sha256,
            metadata,
            created_by: auth.0.id.clone(),
            now: now(),
        };
        let doc = self
            .state
            .store
            .write(move |c| {
                if let Some(p) = &new.project_id
                    && !store::documents::project_in_org(c, &organization_id, p)?
                {
                    return Err(ApiError::bad_request(format!(
                        "project_id does not name a project of your organization: {p}"
                    )));
                }
                let doc = store::documents::insert_document(c, &new, &bytes)?;
                let changes = serde_json::json!({
                    "title": doc.title, "filename": doc.filename, "content_type": doc.content_type,
                    "size_bytes": doc.size_bytes, "project_id": doc.project_id,
                });
                let event = Event::new("document.create", &doc.organization_id, "document", &doc.id);
                store::audit::record(c, &actor, &event.changes(Some(changes)))?;
                Ok(doc)
            })
            .await?;
        self.state.ingest.wake();
        tracing::info!(document_id = %doc.id, content_type = %doc.content_type, size = doc.size_bytes, "document uploaded");
        Ok(Created::Created(Json(doc)))
    }

    /// Get a document
    ///
    /// Needs `agents:read`. Another organization's document is not found.
    #[oai(path = "/documents/:id", method = "get")]
    async fn get(&self, auth: BearerAuth, id: Path<String>) -> ApiResult<Json<Document>> {
        let scope = authz::require(&auth.0, Permission::AgentsRead)?;
        let id = validate::path_id(&id, "Document")?;
        Ok(Json(self.state.store.read(move |c| store::documents::find_document(c, &scope, &id)).await?))
    }

    /// List a document's chunks
    ///
    /// Needs `agents:read`. The indexed passages in document order.
    #[oai(path = "/documents/:id/chunks", method = "get")]
    async fn chunks(
        &self,
        auth: BearerAuth,
        id: Path<String>,
        skip: Query<Option<i64>>,
        limit: Query<Option<i64>>,
    ) -> ApiResult<Json<ListResponse<Chunk>>> {
        let scope = authz::require(&auth.0, Permission::AgentsRead)?;
        let id = validate::path_id(&id, "Document")?;
        let page = Page::new(skip.0, limit.0)?;
        let (rows, total) = self
            .state
            .store
            .read(move |c| {
                store::documents::find_document(c, &scope, &id)?;
                store::documents::list_chunks(c, &scope, &id, page)
            })
            .await?;
        Ok(Json(page.wrap(rows, total)))
    }

    /// Download a document's original file
    ///
    /// Needs `agents:read`. The bytes as uploaded, with their content type, as an attachment.
    #[oai(path = "/documents/:id/file", method = "get")]
    async fn file(&self, auth: BearerAuth, id: Path<String>) -> ApiResult<FileResponse> {
        let scope = authz::require(&auth.0, Permission::AgentsRead)?;
        let id = validate::path_id(&id, "Document")?;
        let (filename, content_type, bytes) =
            self.state.store.read(move |c| store::documents::document_file(c, &scope, &id)).await?;
        let content_type = match content_type.as_str() {
            t if t.starts_with("text/") => format!("{t}; charset=utf-8"),
            t => t.to_string(),
        };
        Ok(FileResponse::File(FileBytes { content_type, bytes }, content_disposition(&filename)))
    }

    /// Reindex a document
    ///
    /// Needs `agents:write`. Queues the document for ingestion again (202); its current chunks
    /// stay searchable until the new ones replace them.
    #[oai(path = "/documents/:id/reindex", method = "post")]
    async fn reindex(&self, auth: BearerAuth, id: Path<String>) -> ApiResult<Accepted> {
        let scope = authz::require(&auth.0, Permission::AgentsWrite)?;
        let id = validate::path_id(&id, "Document")?;
        let actor = auth.0.actor();
        let doc = self
            .state
            .store
            .write(move |c| -> ApiResult<_> {
                let doc = store::documents::request_reindex(c, &scope, &id, &now())?;
                store::audit::record(
                    c,
                    &actor,
                    &Event::new("document.reindex", &doc.organization_id, "document", &id),
                )?;
                Ok(doc)
            })
            .await?;
        self.state.ingest.wake();
        Ok(Accepted::Accepted(Json(doc)))
    }

    /// Delete a document
    ///
    /// Needs `agents:write`. Removes the document, its file and its chunks (not a soft delete).
    #[oai(path = "/documents/:id", method = "delete")]
    async fn delete(&self, auth: BearerAuth, id: Path<String>) -> ApiResult<Deleted> {
        let scope = authz::require(&auth.0, Permission::AgentsWrite)?;
        let id = validate::path_id(&id, "Document")?;
        let actor = auth.0.actor();
        self.state
            .store
            .write(move |c| {
                let doc = store::documents::delete_document(c, &scope, &id)?;
                let event = Event::new("document.delete", &doc.organization_id, "document", &id)
                    .changes(Some(serde_json::json!({ "title": doc.title })));
                store::audit::record(c, &actor, &event).map(drop)
            })
            .await?;
        Ok(Deleted::NoContent)
    }
}

/// The stored file name: the upload's own (without any folder), else the title, with the
/// format's extension.
fn filename(uploaded: Option<&str>, title: Option<&str>, format: Format) -> ApiResult<String> {
    let base = |s: &str| s.rsplit(['/', '\\']).next().unwrap_or("").trim().to_string();
    let name = match uploaded.map(base).filter(|n| !n.is_empty()) {
        Some(n) => n,
        None => {
            let stem: String = title
                .map(base)
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| "document".into())
                .chars()
                .filter(|c| !c.is_control())
                .take(200)
                .collect();
            format!("{stem}.{}", format.extension())
        }
    };
    let name: String = name.chars().filter(|c| !c.is_control()).collect();
    validate::name("filename", &name)
}

/// `attachment; filename="…"; filename*=UTF-8''…` (RFC 6266), with an ASCII fallback name.
fn content_disposition(filename: &str) -> String {
    let ascii: String = filename
        .chars()
        .map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' { c } else { '_' })
        .collect();
    let encoded: String = filename
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}
