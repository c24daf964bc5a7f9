//! Domain types that api, store and llm share (issue 11): the objects the API answers with, as the
//! store reads them. A type lives here when more than one layer needs it. This layer imports no
//! other module of the crate, so every layer may import it (tests/api/layers.rs checks the rule);
//! api re-exports each type from the module of its endpoints.

pub mod agents;
pub mod api_keys;
pub mod audit;
pub mod completions;
pub mod conversations;
pub mod documents;
pub mod knowledge;
pub mod organizations;
pub mod projects;
pub mod roles;
pub mod usage;
pub mod users;
