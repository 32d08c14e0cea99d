//! `devaipod gc [--dry-run] [--force] [--json]`: removes what devaipod made and no longer
//! uses. Half-made pods and the leftovers of workspaces whose pod is gone (an `up`
//! killed midway, a pod removed by hand), their recorded secrets, the images devaipod
//! built that no container uses (never images the user pulled), shared volumes no
//! container mounts, readiness records of gone pods, approvals for folders that no
//! longer exist. What may hold the agent's unreviewed work (the clone of an agent that
//! ran: it has a readiness record) stays unless `--force`; a workspace an `up` is
//! making right now is left alone.
//!
//! Decided by [`decide`] (pure: unit-tested), then applied.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use serde::Serialize;

use super::Context;
use crate::names::Name;
use crate::plan::labels;
use crate::podman::gc::GcInventory;
use crate::state::StateDir;
use crate::terminal::line;

#[derive(Debug, Args)]
pub struct GcArgs {
    /// List what would be removed (and what is kept, and why); remove nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Also remove what may hold the agent's unreviewed work: the clones of half-made
    /// pods and of workspaces whose pod is gone
    #[arg(long, short)]
    pub force: bool,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
}

/// The images devaipod builds or imports (by name): `up`'s Dockerfile and Features
/// builds, and devaipod-net.
const BUILT_PREFIXES: &[&str] = &[
    "localhost/devaipod-build-",
    "localhost/devaipod-features-",
    "localhost/devaipod-net:",
];

/// What one item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Kind {
    /// Everything labelled for a workspace (pod, containers, volumes, secrets).
    Workspace,
    Image,
    SharedVolume,
    ReadyRecord,
    Approval,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Workspace => "workspace",
            Kind::Image => "image",
            Kind::SharedVolume => "shared volume",
            Kind::ReadyRecord => "readiness record",
            Kind::Approval => "approval",
        }
    }
}

/// One thing gc removes or keeps, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Item {
    pub kind: Kind,
    /// The workspace, image, volume or record's name (an image: its names, else id).
    pub name: String,
    /// An image's id (what is removed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub reason: String,
}

/// What gc will remove, and what it keeps.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct GcPlan {
    pub remove: Vec<Item>,
    pub keep: Vec<Item>,
}

/// What devaipod's state directory holds, and what is current.
#[derive(Debug, Default, Clone)]
pub(crate) struct Facts {
    /// Workspaces with recorded secrets.
    pub secret_records: Vec<String>,
    pub ready_records: Vec<String>,
    /// Approvals: key and the folder the command runs in.
    pub approvals: Vec<(String, PathBuf)>,
    /// Folders of `approvals` that exist.
    pub existing_folders: BTreeSet<PathBuf>,
    /// Workspaces an `up` is making now (their lock is held).
    pub being_made: BTreeSet<String>,
    /// No state directory (no HOME): whether an agent ran is unknown, so every clone
    /// is kept unless `--force`.
    pub no_state: bool,
    /// This devaipod's devaipod-net image and shared volumes: kept even when unused.
    pub current_images: BTreeSet<String>,
    pub current_volumes: BTreeSet<String>,
}

/// Decides, without the engine, what gc removes.
pub(crate) fn decide(inv: &GcInventory, facts: &Facts, force: bool) -> GcPlan {
    let mut plan = GcPlan::default();
    let item = |kind, name: &str, reason: String| Item {
        kind,
        name: name.to_string(),
        id: None,
        reason,
    };
    let with_pod: BTreeSet<&str> = inv.workspaces.iter().map(|w| w.name.as_str()).collect();
    let agent_clone = |name: &str| {
        let volume = format!("devaipod-{name}-agent-repo");
        inv.volumes.iter().any(|v| v.name == volume)
    };
    // Workspaces: half-made pods, then names with objects but no pod.
    let mut candidates: BTreeMap<String, String> = BTreeMap::new();
    for w in &inv.workspaces {
        let missing = w.missing();
        if !missing.is_empty() {
            candidates.insert(
                w.name.clone(),
                format!(
                    "pod {} has no {} container (half-made or damaged)",
                    w.pod,
                    missing.join(" or ")
                ),
            );
        }
    }
    let leftovers = inv
        .containers
        .iter()
        .map(|c| c.workspace.as_str())
        .chain(inv.volumes.iter().map(|v| v.workspace.as_str()))
        .chain(inv.secrets.keys().map(String::as_str))
        .chain(facts.secret_records.iter().map(String::as_str));
    for name in leftovers {
        if !with_pod.contains(name) {
            candidates.entry(name.to_string()).or_insert_with(|| {
                format!("objects labelled for {name} are left, but its pod devaipod-{name} is gone")
            });
        }
    }
    for (name, reason) in candidates {
        if Name::new(&name).is_err() {
            // Not a name devaipod makes: nothing of it is devaipod's to remove.
            continue;
        }
        let agent_ran = facts.no_state || facts.ready_records.contains(&name);
        if facts.being_made.contains(&name) {
            plan.keep.push(item(
                Kind::Workspace,
                &name,
                "an `up` is making it now".into(),
            ));
        } else if agent_clone(&name) && agent_ran && !force {
            // The agent answered once (its readiness record): its clone may hold work.
            // An `up` killed before that leaves a clone the agent never touched.
            plan.keep.push(item(
                Kind::Workspace,
                &name,
                format!(
                    "{reason}; its agent ran, and its clone (volume devaipod-{name}-agent-repo) may hold unreviewed work: `devaipod gc --force` removes it"
                ),
            ));
        } else {
            plan.remove.push(item(Kind::Workspace, &name, reason));
        }
    }
    for i in &inv.images {
        let built = !i.names.is_empty()
            && i.names
                .iter()
                .all(|n| BUILT_PREFIXES.iter().any(|p| n.starts_with(p)));
        if !built || i.names.iter().any(|n| facts.current_images.contains(n)) {
            continue;
        }
        if i.containers == 0 {
            plan.remove.push(Item {
                kind: Kind::Image,
                name: i.names.join(", "),
                id: Some(i.id.clone()),
                reason: "built by devaipod; no container uses it".into(),
            });
        }
    }
    for v in &inv.unused_shared {
        if !facts.current_volumes.contains(v) {
            plan.remove.push(item(
                Kind::SharedVolume,
                v,
                "no container mounts it, and this devaipod makes another".into(),
            ));
        }
    }
    for r in &facts.ready_records {
        let kept = plan
            .keep
            .iter()
            .any(|k| k.kind == Kind::Workspace && &k.name == r);
        if !with_pod.contains(r.as_str()) && !kept {
            plan.remove.push(item(
                Kind::ReadyRecord,
                r,
                format!("pod devaipod-{r} is gone"),
            ));
        }
    }
    for (key, folder) in &facts.approvals {
        if !facts.existing_folders.contains(folder) {
            plan.remove.push(item(
                Kind::Approval,
                key,
                format!("its folder {} no longer exists", folder.display()),
            ));
        }
    }
    plan
}

/// The names this devaipod keeps even unused: its devaipod-net image and volume, and
/// the bundled image's volume.
async fn current(engine: &crate::podman::Engine, facts: &mut Facts) -> Result<()> {
    if let Ok(net) = crate::net_binary::find() {
        let key = net.image.rsplit(':').next().unwrap_or_default().to_string();
        facts.current_volumes.insert(format!("devaipod-net-{key}"));
        facts.current_images.insert(net.image);
    }
    if let Some(id) = engine.image_id(crate::plan::BUNDLED_IMAGE).await? {
        let id = id.trim_start_matches("sha256:");
        facts
            .current_volumes
            .insert(format!("devaipod-bundled-{}", &id[..id.len().min(12)]));
    }
    Ok(())
}

fn read_facts(
    state: Option<&StateDir>,
    inv: &GcInventory,
) -> Result<(Facts, Vec<crate::locks::Held>)> {
    let mut facts = Facts {
        no_state: state.is_none(),
        ..Default::default()
    };
    if let Some(s) = state {
        facts.secret_records = s.record_names("secrets");
        facts.ready_records = s.record_names("ready");
        facts.approvals = s.approvals();
        facts.existing_folders = facts
            .approvals
            .iter()
            .map(|(_, f)| f.clone())
            .filter(|f| f.is_dir())
            .collect();
    }
    // Every workspace gc might touch: held until gc ends, so no `up` starts making it
    // meanwhile; those an `up` holds are left alone.
    let mut names: BTreeSet<String> = inv.workspaces.iter().map(|w| w.name.clone()).collect();
    names.extend(inv.containers.iter().map(|c| c.workspace.clone()));
    names.extend(inv.volumes.iter().map(|v| v.workspace.clone()));
    names.extend(inv.secrets.keys().cloned());
    names.extend(facts.secret_records.iter().cloned());
    let mut held = Vec::new();
    for n in names {
        if Name::new(&n).is_err() {
            continue;
        }
        match crate::locks::try_workspace(&n)? {
            Some(h) => held.push(h),
            None => {
                facts.being_made.insert(n);
            }
        }
    }
    Ok((facts, held))
}

pub(super) async fn run(ctx: &Context, args: GcArgs) -> Result<ExitCode> {
    let engine = ctx.engine().await?;
    let state = StateDir::from_env();
    // Shared volumes and devaipod-net's images are made under this lock.
    let _shared = crate::locks::shared()?;
    let inv = engine.gc_inventory().await?;
    let (mut facts, _held) = read_facts(state.as_ref(), &inv)?;
    current(engine, &mut facts).await?;
    let plan = decide(&inv, &facts, args.force);
    let mut done = Vec::new();
    let mut failed = Vec::new();
    if !args.dry_run {
        for item in &plan.remove {
            match remove(engine, state.as_ref(), item, args.force).await {
                Ok(true) => done.push(item.clone()),
                Ok(false) => {}
                Err(e) => failed.push((item.clone(), format!("{e:#}"))),
            }
        }
    }
    if args.json {
        let out = serde_json::json!({
            "dry_run": args.dry_run,
            "remove": if args.dry_run { &plan.remove } else { &done },
            "keep": plan.keep,
            "failed": failed.iter().map(|(i, e)| serde_json::json!({"item": i, "error": e})).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let verb = if args.dry_run {
            "would remove"
        } else {
            "removed"
        };
        let shown = if args.dry_run { &plan.remove } else { &done };
        for i in shown {
            println!(
                "{verb} {} {} ({})",
                i.kind.as_str(),
                line(&i.name),
                line(&i.reason)
            );
        }
        for i in &plan.keep {
            println!(
                "kept {} {}: {}",
                i.kind.as_str(),
                line(&i.name),
                line(&i.reason)
            );
        }
        if shown.is_empty() && plan.keep.is_empty() && failed.is_empty() {
            println!("nothing to remove");
        }
    }
    for (i, e) in &failed {
        eprintln!(
            "devaipod: could not remove {} {}: {}",
            i.kind.as_str(),
            line(&i.name),
            line(e)
        );
    }
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Removes one item; `Ok(false)` when it was gone already (or, for an image or shared
/// volume, a container took it meanwhile).
async fn remove(
    engine: &crate::podman::Engine,
    state: Option<&StateDir>,
    item: &Item,
    force: bool,
) -> Result<bool> {
    match item.kind {
        Kind::Workspace => {
            // Checked again now, under its lock: an `up` that ended since the listing
            // may have made it whole, or its agent may have answered.
            for row in engine.workspaces(Some(&item.name)).await? {
                if row.container("workspace").is_some() && row.container("agent").is_some() {
                    return Ok(false);
                }
            }
            let ran = state.is_none_or(|s| s.record_names("ready").contains(&item.name));
            let clone = format!("devaipod-{}-agent-repo", item.name);
            let has_clone = engine
                .volumes_with_label(labels::POD, &item.name)
                .await?
                .contains(&clone);
            if ran && has_clone && !force {
                return Ok(false);
            }
            let known = state
                .map(|s| s.recorded_secrets(&item.name))
                .unwrap_or_default();
            let removed = engine.remove_labelled(&item.name, &known).await?;
            if let Some(s) = state {
                s.forget_secrets(&item.name);
                if let Ok(n) = Name::new(&item.name) {
                    s.forget(&n);
                }
            }
            Ok(!removed.is_empty() || !known.is_empty())
        }
        Kind::Image => {
            let id = item.id.as_deref().unwrap_or(&item.name);
            match engine.remove_image_unforced(id).await {
                Ok(gone) => Ok(gone),
                Err(e) if crate::podman::client::is_conflict(&e) => Ok(false),
                Err(e) => Err(e),
            }
        }
        Kind::SharedVolume => match engine.remove_volume_unforced(&item.name).await {
            Ok(gone) => Ok(gone),
            Err(e) if crate::podman::client::is_conflict(&e) => Ok(false),
            Err(e) => Err(e),
        },
        Kind::ReadyRecord => match state {
            Some(s) => s.remove_ready(&item.name),
            None => Ok(false),
        },
        Kind::Approval => match state {
            Some(s) => s.remove_approval(&item.name),
            None => Ok(false),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::podman::gc::{ImageRow, LabelledContainer, LabelledVolume};
    use crate::podman::inventory::{ContainerRow, WorkspaceRow};

    fn row(name: &str, roles: &[&str]) -> WorkspaceRow {
        WorkspaceRow {
            name: name.into(),
            pod: format!("devaipod-{name}"),
            status: "running".into(),
            repo: String::new(),
            image: String::new(),
            created: String::new(),
            containers: roles
                .iter()
                .map(|r| ContainerRow {
                    role: r.to_string(),
                    name: format!("devaipod-{name}-{r}"),
                    state: "running".into(),
                    id: String::new(),
                    image: String::new(),
                    started_at: 0,
                })
                .collect(),
        }
    }

    fn volume(workspace: &str, what: &str) -> LabelledVolume {
        LabelledVolume {
            name: format!("devaipod-{workspace}-{what}"),
            workspace: workspace.into(),
        }
    }

    fn image(names: &[&str], containers: u64) -> ImageRow {
        ImageRow {
            id: format!("id-{}", names.first().unwrap_or(&"none")),
            names: names.iter().map(|n| n.to_string()).collect(),
            containers,
        }
    }

    fn names(items: &[Item]) -> Vec<(Kind, &str)> {
        items.iter().map(|i| (i.kind, i.name.as_str())).collect()
    }

    #[test]
    fn only_what_devaipod_made_and_nothing_uses_is_removed() {
        let inv = GcInventory {
            workspaces: vec![
                row("whole", &["workspace", "agent"]),
                row("half", &["workspace"]),
            ],
            containers: vec![LabelledContainer {
                name: "devaipod-stray-workspace".into(),
                workspace: "stray".into(),
            }],
            volumes: vec![
                volume("whole", "agent-repo"),
                volume("stray", "workspace"),
                volume("gone", "agent-repo"),
                volume("gone", "agent-home"),
                volume("killed", "agent-repo"),
            ],
            secrets: [(
                "labelled".to_string(),
                vec!["devaipod-labelled-x".to_string()],
            )]
            .into(),
            unused_shared: vec!["devaipod-net-old".into(), "devaipod-net-now".into()],
            images: vec![
                image(&["localhost/devaipod-build-r:1"], 0),
                image(&["localhost/devaipod-features-r:1"], 2),
                image(&["localhost/devaipod-net:old"], 0),
                image(&["localhost/devaipod-net:now"], 0),
                image(&["docker.io/library/debian:12"], 0),
                image(&["localhost/devaipod-build-r:2", "localhost/mine:1"], 0),
                image(&[], 0),
            ],
        };
        let facts = Facts {
            secret_records: vec!["whole".into(), "killed".into(), "making".into()],
            ready_records: vec!["whole".into(), "old".into(), "gone".into()],
            approvals: vec![
                ("k1".into(), PathBuf::from("/here")),
                ("k2".into(), PathBuf::from("/gone")),
            ],
            existing_folders: [PathBuf::from("/here")].into(),
            being_made: ["making".to_string()].into(),
            current_images: ["localhost/devaipod-net:now".to_string()].into(),
            current_volumes: ["devaipod-net-now".to_string()].into(),
            no_state: false,
        };
        let plan = decide(&inv, &facts, false);
        assert_eq!(
            names(&plan.remove),
            [
                (Kind::Workspace, "half"),
                (Kind::Workspace, "killed"),
                (Kind::Workspace, "labelled"),
                (Kind::Workspace, "stray"),
                (Kind::Image, "localhost/devaipod-build-r:1"),
                (Kind::Image, "localhost/devaipod-net:old"),
                (Kind::SharedVolume, "devaipod-net-old"),
                (Kind::ReadyRecord, "old"),
                (Kind::Approval, "k2"),
            ]
        );
        assert_eq!(
            names(&plan.keep),
            [(Kind::Workspace, "gone"), (Kind::Workspace, "making")]
        );
        assert!(
            plan.keep[0].reason.contains("--force"),
            "{:?}",
            plan.keep[0]
        );
        assert!(plan.remove[0].reason.contains("no agent container"));
        // --force takes the leftover clone too, never a workspace being made.
        let forced = decide(&inv, &facts, true);
        assert!(names(&forced.remove).contains(&(Kind::Workspace, "gone")));
        assert!(names(&forced.remove).contains(&(Kind::ReadyRecord, "gone")));
        assert_eq!(names(&forced.keep), [(Kind::Workspace, "making")]);
    }

    #[test]
    fn without_state_every_clone_is_kept_and_odd_names_are_never_touched() {
        let inv = GcInventory {
            volumes: vec![volume("gone", "agent-repo"), volume("../x", "workspace")],
            ..Default::default()
        };
        let facts = Facts {
            no_state: true,
            ..Default::default()
        };
        let plan = decide(&inv, &facts, false);
        assert!(plan.remove.is_empty(), "{plan:?}");
        assert_eq!(names(&plan.keep), [(Kind::Workspace, "gone")]);
        assert_eq!(
            names(&decide(&inv, &facts, true).remove),
            [(Kind::Workspace, "gone")]
        );
    }

    #[test]
    fn a_clean_machine_has_nothing_to_remove() {
        let inv = GcInventory {
            workspaces: vec![row("a", &["workspace", "agent", "proxy"])],
            volumes: vec![volume("a", "agent-repo")],
            ..Default::default()
        };
        let facts = Facts {
            secret_records: vec!["a".into()],
            ready_records: vec!["a".into()],
            ..Default::default()
        };
        assert_eq!(decide(&inv, &facts, true), GcPlan::default());
    }
}
