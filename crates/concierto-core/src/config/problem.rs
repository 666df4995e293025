//! Problems found in a studio: each names the file, the line and the key path.

use std::fmt;
use std::path::{Path, PathBuf};

/// How bad a problem is. Only errors make a studio invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Worth knowing; the studio still runs.
    Warning,
    /// The studio cannot run like this.
    Error,
}

/// One problem in a studio file or role file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Error or warning.
    pub severity: Severity,
    /// The file it is in.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// Key path, e.g. `triggers.scheduled[0].daily_content_generation.agents[1]`.
    pub key: String,
    /// What is wrong and, where possible, what to do.
    pub message: String,
}

impl Problem {
    /// An error.
    pub fn error(
        file: &Path,
        line: Option<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Problem {
            severity: Severity::Error,
            file: file.to_path_buf(),
            line,
            key: key.into(),
            message: message.into(),
        }
    }

    /// A warning.
    pub fn warning(
        file: &Path,
        line: Option<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Problem {
            severity: Severity::Warning,
            ..Problem::error(file, line, key, message)
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        if self.key.is_empty() {
            write!(f, ": {level}: {}", self.message)
        } else {
            write!(f, ": {level}: {}: {}", self.key, self.message)
        }
    }
}

/// Every problem found, errors first. Returned when a studio cannot be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    /// True when at least one is an error.
    pub fn has_errors(&self) -> bool {
        self.0.iter().any(|p| p.severity == Severity::Error)
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}
