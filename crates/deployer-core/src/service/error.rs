use std::borrow::Cow;

/// A service setting that makes no sense, named by its field path (`health.interval`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {problem}")]
pub struct SpecError {
    /// Dotted path of the offending field, as it appears in the config file.
    pub field: Cow<'static, str>,
    /// What is wrong with its value.
    pub problem: String,
}

impl SpecError {
    /// A rejection of `field` for `problem`.
    pub fn invalid(field: impl Into<Cow<'static, str>>, problem: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
        }
    }
}
