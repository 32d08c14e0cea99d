//! TODO(helper): see main.rs
pub(crate) fn allow_command(
    _s: &std::path::Path,
    _a: &[String],
    _r: &[String],
    _j: bool,
) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
pub(crate) fn stats_command(_s: &std::path::Path, _j: bool) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
