//! What every builder reads: the input, and how this workspace's objects are named and
//! labelled.

use std::collections::BTreeMap;

use super::input::PlanInput;
use super::labels::{self, Role};

/// The input and the naming of one workspace's objects.
pub(crate) struct Context<'a> {
    pub input: &'a PlanInput,
    /// `devaipod-NAME`: the pod, and the prefix of every object's name.
    pub pod_name: String,
    repo_path: String,
}

impl<'a> Context<'a> {
    pub(crate) fn new(input: &'a PlanInput) -> Self {
        Context {
            input,
            pod_name: input.name.pod_name(),
            repo_path: input.repo.path.display().to_string(),
        }
    }

    /// The full label set of an object with this role.
    pub(crate) fn labels(&self, role: Role) -> BTreeMap<String, String> {
        labels::for_object(
            &self.input.name,
            role,
            &self.repo_path,
            &self.input.extra_labels,
        )
    }

    /// `devaipod-NAME-what`.
    pub(crate) fn object_name(&self, what: &str) -> String {
        format!("{}-{what}", self.pod_name)
    }
}
