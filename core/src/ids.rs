//! Identifiers. Newtypes so that an ad id is never passed where a job id goes.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            pub fn new(s: impl Into<String>) -> Self {
                Self(s.into())
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_id!(
    /// An ad on the ads platform (Meta's numeric id as a string).
    AdId
);
string_id!(
    /// A brand: the tenant every job, schedule, intent, ledger row, event
    /// row and cost row belongs to. A store written before brands existed
    /// holds one brand, [`BrandId::DEFAULT`].
    BrandId
);

impl BrandId {
    /// The brand of a single-brand deployment, and of rows older than brands.
    pub const DEFAULT: &str = "default";

    pub fn is_default(&self) -> bool {
        self.0 == Self::DEFAULT
    }

    /// Brand ids name config sections, schedule rows and log targets: a
    /// letter or digit, then letters, digits, `-` and `_`, at most 40.
    pub fn parse(s: &str) -> Result<BrandId, String> {
        let ok = !s.is_empty()
            && s.len() <= 40
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if ok {
            Ok(BrandId(s.to_string()))
        } else {
            Err(format!("brand id {s:?}: want 1-40 of [A-Za-z0-9_-], starting with a letter or digit"))
        }
    }
}

impl Default for BrandId {
    fn default() -> Self {
        BrandId(Self::DEFAULT.to_string())
    }
}

string_id!(
    /// A stable worker identity. A restarted container keeps it; its
    /// incarnation changes.
    WorkerId
);
string_id!(
    /// The key that makes an irreversible action or an enqueue happen at most once.
    IdempotencyKey
);

/// A job row's id, assigned by the store.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub u64);

/// The fencing token of one claim of one job. Every write of that attempt
/// carries it; a write with a stale token is refused.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ClaimToken(pub u64);

/// Which boot of a worker this is; assigned by the store at boot.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Incarnation(pub u64);

impl fmt::Debug for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "job#{}", self.0)
    }
}
impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "job#{}", self.0)
    }
}
impl fmt::Debug for ClaimToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tok#{}", self.0)
    }
}
impl fmt::Debug for Incarnation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "inc#{}", self.0)
    }
}
