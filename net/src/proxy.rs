//! TODO(helper): see main.rs
pub(crate) fn run(_config: &std::path::Path, _state: &std::path::Path) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
