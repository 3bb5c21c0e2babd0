//! Pure rules of Switchboard: identifiers, statuses, node configs, graph checks, routing, conditions,
//! phone numbers, lead files, calling hours and the call simulator. Nothing here knows HTTP, SQL or tokio.

pub mod condition;
pub mod config;
pub mod graph;
pub mod hours;
pub mod ids;
pub mod leadfile;
pub mod model;
pub mod phone;
#[cfg(test)]
mod properties;
pub mod settings;
pub mod simulator;
pub mod time;

/// A rule broken by input: a stable code plus a message that names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Invalid {
    pub code: &'static str,
    pub message: String,
}

impl Invalid {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}
