//! Domain types that api, store and llm share (issue 11). A type lives here when more than one
//! layer needs it; this layer imports nothing of the crate but `validate`-free plain data, so every
//! other layer may import it and it imports none of them.

pub mod audit;
