//! Embeddings through an OpenAI-compatible `POST {base_url}/embeddings` (SPEC §7): the provider
//! of `[[llm.providers]]` that lists `[knowledge] embedding_model` among its models.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{Provider, Providers};

/// Texts per request.
const BATCH: usize = 32;

pub struct Embedder {
    pub model: String,
    provider: Arc<Provider>,
    http: reqwest::Client,
}

impl Embedder {
    /// The embedder for `model`, when a provider serves it; `None` for an empty model.
    pub fn new(model: &str, providers: &Providers) -> Result<Option<Embedder>, String> {
        if model.is_empty() {
            return Ok(None);
        }
        let provider = providers.for_model(model).ok_or_else(|| {
            format!(
                "configuration error: knowledge.embedding_model: no [[llm.providers]] entry lists {model:?} in \
                 its models"
            )
        })?;
        Ok(Some(Embedder { model: model.to_string(), provider, http: providers.http.clone() }))
    }

    /// One vector per text, in order. `Err` says what failed, without the key.
    pub async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, String> {
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(BATCH) {
            out.extend(self.embed_batch(batch).await.map_err(|e| self.provider.redact(&e))?);
        }
        Ok(out)
    }

    async fn embed_batch(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, String> {
        let url = format!("{}/embeddings", self.provider.base_url);
        let mut req = self.http.post(&url).json(&json!({"model": self.model, "input": texts}));
        if let Some(key) = &self.provider.api_key {
            req = req.bearer_auth(&key.0);
        }
        let resp = tokio::time::timeout(self.provider.timeout, req.send())
            .await
            .map_err(|_| format!("{} did not answer within {} s", self.provider.name, self.provider.timeout.as_secs()))?
            .map_err(|e| format!("cannot reach {}: {e}", self.provider.name))?;
        let status = resp.status();
        let body: Value = tokio::time::timeout(self.provider.timeout, resp.json())
            .await
            .map_err(|_| format!("{} did not finish its answer in time", self.provider.name))?
            .map_err(|e| format!("{} answered {status} without JSON: {e}", self.provider.name))?;
        if !status.is_success() {
            let why = body.pointer("/error/message").and_then(Value::as_str).unwrap_or("");
            return Err(format!("{} answered {status} {why}", self.provider.name).trim().to_string());
        }
        let mut rows: Vec<(usize, Vec<f32>)> = vec![];
        for (i, item) in body["data"].as_array().ok_or("no `data` in the embeddings answer")?.iter().enumerate() {
            let index = item["index"].as_u64().map(|n| n as usize).unwrap_or(i);
            let vector: Vec<f32> = item["embedding"]
                .as_array()
                .ok_or("an embedding is not an array of numbers")?
                .iter()
                .map(|v| v.as_f64().map(|f| f as f32).ok_or("an embedding is not an array of numbers"))
                .collect::<Result<_, _>>()?;
            rows.push((index, vector));
        }
        rows.sort_by_key(|(i, _)| *i);
        let vectors: Vec<Vec<f32>> = rows.into_iter().map(|(_, v)| v).collect();
        let dims = vectors.first().map_or(0, Vec::len);
        if vectors.len() != texts.len() || dims == 0 || vectors.iter().any(|v| v.len() != dims) {
            return Err(format!("{} answered {} vectors for {} texts", self.provider.name, vectors.len(), texts.len()));
        }
        Ok(vectors)
    }
}
