//! The labels on every object devaipod creates; `list`, `delete` and cleanup find
//! objects by these, never by name guessing.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::names::Name;

/// Every devaipod label starts with this.
pub const PREFIX: &str = "io.devaipod.";
/// NAME of the workspace the object belongs to.
pub const POD: &str = "io.devaipod.pod";
/// What the object is for (see [`Role`]).
pub const ROLE: &str = "io.devaipod.role";
/// The host repo path the workspace was made from.
pub const REPO: &str = "io.devaipod.repo";
/// The devaipod version that created the object.
pub const VERSION: &str = "io.devaipod.version";

/// What an object is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Pod,
    Workspace,
    Agent,
    Gator,
    Proxy,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Pod => "pod",
            Role::Workspace => "workspace",
            Role::Agent => "agent",
            Role::Gator => "gator",
            Role::Proxy => "proxy",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The full label set of one object.
pub fn for_object(
    name: &Name,
    role: Role,
    repo: &str,
    extra: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut labels = extra.clone();
    labels.insert(POD.into(), name.to_string());
    labels.insert(ROLE.into(), role.as_str().into());
    labels.insert(REPO.into(), repo.into());
    labels.insert(VERSION.into(), crate::VERSION.into());
    labels
}
