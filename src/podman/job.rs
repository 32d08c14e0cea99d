//! Short-lived job containers over the agent's clone: a script run to completion
//! outside the pod, with the clone mounted read-only, hardened like the agent (its
//! seccomp profile, no capabilities, no-new-privileges, read-only root with a bounded
//! tmpfs, its pids and memory limits, its uid, no network). Used to read the agent's
//! clone from its volume without an exec session in the pod (on Podman 4.3 one makes
//! removing the pod seconds slower). A job is planned as a [`ContainerSpec`], created
//! from the same SpecGenerator mapping, labelled like every devaipod object, verified
//! like the pod's containers before it starts, stopped after [`JOB_TIMEOUT`], and its
//! output is read only up to fixed bounds: everything in it may be the agent's.
//!
//! Git in a job never reads the agent's git configuration: [`safe_git_dir`] builds a
//! git directory in the job's tmpfs from the clone's refs and index only, with
//! devaipod's own config, and points git at the clone's objects and work tree.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};

use super::{Engine, encode, spec, verify};
use crate::names::Name;
use crate::plan::{ContainerSpec, MountSpec, Role, Seccomp, labels};

/// How long a job may run before it is killed. Reading branch tips, a log of the
/// agent's commits, `git status` and bundling only the commits beyond the pod's base
/// take seconds even on large clones; a clone that makes git block (a FIFO where git
/// reads a file) or crawl must not hold `review` or `delete` for longer. Below
/// [`super::REQUEST_TIMEOUT`], so the wait request never times out first.
pub(crate) const JOB_TIMEOUT: Duration = Duration::from_secs(90);

/// `DEVAIPOD_JOB_TIMEOUT_SECS` may only shorten [`JOB_TIMEOUT`] (tests use it to see
/// the timeout without waiting for it).
fn job_timeout() -> Duration {
    std::env::var("DEVAIPOD_JOB_TIMEOUT_SECS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_secs)
        .map_or(JOB_TIMEOUT, |d| d.min(JOB_TIMEOUT))
}

/// The size of a job's tmpfs (its /tmp, where the git directory and the output go): the
/// largest bundle devaipod fetches plus room for the copied index and refs.
pub(crate) const JOB_TMPFS_BYTES: u64 = BUNDLE_LIMIT + 512 * 1024 * 1024;

/// The largest review bundle devaipod fetches. A bundle holds only the agent's commits
/// beyond the pod's base, usually kilobytes; 2 GiB still lets an agent that vendored
/// a large dependency be reviewed, while a clone cannot fill the host's disk.
pub(crate) const BUNDLE_LIMIT: u64 = 2 * 1024 * 1024 * 1024;

/// The most of a job's output (stdout and stderr) devaipod reads: it only quotes the
/// last lines of a failed job.
const JOB_LOG_LIMIT: usize = 64 * 1024;

/// Which hash the agent's clone uses (from the pod's base commit, which devaipod
/// recorded from the host repo; never from the agent's config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ObjectFormat {
    Sha1,
    Sha256,
}

impl ObjectFormat {
    /// The format whose commit ids are as long as `commit` (40 or 64 hex digits).
    pub(crate) fn of_commit(commit: &str) -> Option<Self> {
        if !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        match commit.len() {
            40 => Some(Self::Sha1),
            64 => Some(Self::Sha256),
            _ => None,
        }
    }

    /// The length of a commit id in hex digits.
    pub(crate) fn hex_len(self) -> usize {
        match self {
            Self::Sha1 => 40,
            Self::Sha256 => 64,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Sha1 => "sha1",
            Self::Sha256 => "sha256",
        }
    }
}

/// What a [`Engine::run_job`] container left behind.
#[derive(Debug)]
pub(crate) struct JobOutput {
    pub code: i64,
    /// stdout and stderr, interleaved, at most [`JOB_LOG_LIMIT`] bytes.
    pub logs: String,
    /// The files fetched by [`Fetch::Tree`].
    pub files: Vec<(String, Vec<u8>)>,
    /// Whether [`Fetch::File`] found its file.
    pub copied: bool,
}

/// What [`Engine::run_job`] reads out of the job once it ended.
#[derive(Debug)]
pub(crate) enum Fetch<'a> {
    /// The regular files under `path`, into memory, at most `limit` bytes of archive.
    Tree { path: &'a str, limit: u64 },
    /// The file `path` copied into `dest`, at most `limit` bytes of archive.
    File {
        path: &'a str,
        limit: u64,
        dest: &'a mut std::fs::File,
    },
}

/// A job over the agent's clone of workspace `name`.
#[derive(Debug, Clone)]
pub(crate) struct CloneJob<'a> {
    pub name: &'a Name,
    /// The host repo the workspace was made from (its `io.devaipod.repo` label).
    pub repo: &'a str,
    pub image: &'a str,
    pub object_format: ObjectFormat,
    /// sh script run after [`safe_git_dir`], with `args` as $1...; `$out` is the
    /// directory for its output.
    pub script: &'a str,
    pub args: &'a [&'a str],
}

/// Where the agent's clone is mounted in a job.
pub(crate) const CLONE_IN_JOB: &str = "/repo";

/// The variable holding the line a job prints when its script succeeded.
const JOB_DONE_ENV: &str = "DEVAIPOD_JOB_DONE";

/// Where a job writes its output ([`Fetch`] reads it from there).
pub(crate) const JOB_OUT: &str = "/tmp/out";

/// The largest `.git/packed-refs` a clone job reads: about 800 000 refs. A clone of the
/// host repo carries its branches and tags; one larger than this is refused, not read.
pub(crate) const PACKED_REFS_MAX: u64 = 64 * 1024 * 1024;
/// The most files and folders under `.git/refs/heads` a clone job reads: twice the
/// branches a report may name ([`MAX_BRANCHES`]), as each branch is a file and its
/// folders count too.
pub(crate) const LOOSE_REFS_MAX: usize = 2 * MAX_BRANCHES;
/// The largest file under `.git/refs/heads` a clone job reads: a branch ref is one line.
pub(crate) const LOOSE_REF_FILE_MAX: u64 = 1024;
/// The largest `.git/index` (and each `.git/sharedindex.*`) a clone job reads: an
/// index of well over a million files.
pub(crate) const INDEX_MAX: u64 = 128 * 1024 * 1024;
/// The most `.git/sharedindex.*` files (git's split index) a clone job reads.
pub(crate) const SHARED_INDEXES_MAX: usize = 2;
/// The largest `.git/HEAD`, `.git/shallow` and `.git/info/exclude` a clone job reads.
pub(crate) const SMALL_FILE_MAX: u64 = 1024 * 1024;
/// More branches than this in the agent's clone are refused, not read.
pub(crate) const MAX_BRANCHES: usize = 10_000;
/// More commits than this beyond the pod's base are refused, not read: review and
/// delete list each one.
pub(crate) const MAX_COMMITS: usize = 10_000;

/// What a clone job refuses to read because the agent's clone holds more than the
/// bounds above: each is the job's exit code, which only devaipod's script uses (git
/// exits 0, 1 or 128 and up), so the message devaipod shows is its own, not text from
/// the job's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TooLarge {
    PackedRefs,
    LooseRefs,
    LooseRefFile,
    Index,
    SmallFile,
    SharedIndexes,
    Branches,
    Commits,
}

impl TooLarge {
    const ALL: [Self; 8] = [
        Self::PackedRefs,
        Self::LooseRefs,
        Self::LooseRefFile,
        Self::Index,
        Self::SmallFile,
        Self::SharedIndexes,
        Self::Branches,
        Self::Commits,
    ];

    /// The job's exit code for it.
    pub(crate) fn code(self) -> i64 {
        match self {
            Self::PackedRefs => 10,
            Self::LooseRefs => 11,
            Self::LooseRefFile => 12,
            Self::Index => 13,
            Self::SmallFile => 14,
            Self::SharedIndexes => 15,
            Self::Branches => 16,
            Self::Commits => 17,
        }
    }

    fn of_code(code: i64) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.code() == code)
    }

    /// What the clone holds too much of, and what would bring it within the bound.
    fn what(self) -> String {
        let mib = |b: u64| b / (1024 * 1024);
        match self {
            Self::PackedRefs => format!(
                "its .git/packed-refs is larger than {} MiB; delete refs it does not need (`git for-each-ref` lists them, `git update-ref -d REF` deletes one)",
                mib(PACKED_REFS_MAX)
            ),
            Self::LooseRefs => format!(
                "its .git/refs/heads holds more than {LOOSE_REFS_MAX} files and folders; delete branches (`git branch -D`)"
            ),
            Self::LooseRefFile => format!(
                "a file under its .git/refs/heads is larger than {LOOSE_REF_FILE_MAX} bytes (a branch is one line); remove it"
            ),
            Self::Index => format!(
                "its .git/index (or a .git/sharedindex.*) is larger than {} MiB",
                mib(INDEX_MAX)
            ),
            Self::SmallFile => format!(
                "its .git/HEAD, .git/shallow or .git/info/exclude is larger than {} MiB",
                mib(SMALL_FILE_MAX)
            ),
            Self::SharedIndexes => format!(
                "it has more than {SHARED_INDEXES_MAX} .git/sharedindex.* files; `git update-index --no-split-index` removes the split index"
            ),
            Self::Branches => {
                format!("it has more than {MAX_BRANCHES} branches; delete some (`git branch -D`)")
            }
            Self::Commits => format!(
                "its branches hold more than {MAX_COMMITS} commits beyond the commit the pod started from"
            ),
        }
    }
}

/// The error for a clone job that ended with one of [`TooLarge`]'s codes: what the
/// clone holds too much of, where, and what to do. `None` for any other exit code.
pub(crate) fn explain_too_large(code: i64, name: &Name) -> Option<anyhow::Error> {
    let what = TooLarge::of_code(code)?.what();
    let pod = name.pod_name();
    Some(anyhow!(
        "the agent's clone of {name} (volume {pod}-agent-repo) holds more than devaipod reads, so it was not read: {what}. Look at it with `devaipod exec {name} --container agent`; `devaipod delete {name} --force` deletes the workspace without reading it"
    ))
}

/// The start of every clone job's script: a git directory in the job's tmpfs made of
/// copies of the clone's HEAD, branch refs, packed-refs, index (and split-index
/// files), shallow list and exclude patterns (regular files only; links, FIFOs and
/// devices are dropped), with devaipod's config; the clone's objects and work tree are
/// reached through GIT_OBJECT_DIRECTORY and GIT_WORK_TREE. So no config, hook or
/// attributes file of the agent's is ever read: no fsmonitor, hook, filter, diff or
/// textconv driver, pager, alias or include of the agent's can run. .gitattributes in
/// the work tree may name drivers, but only config defines them. Submodules are not
/// entered (a nested repo's config would be the agent's again). `$1` is the object
/// format; the caller's script gets the remaining arguments.
///
/// Every copy is bounded ([`PACKED_REFS_MAX`] and the rest): a file over its bound is
/// refused before it is read (exit code [`TooLarge::code`]), and a copy reads at most
/// the bound plus one byte, so a file the agent grows meanwhile is refused too, never
/// copied whole. The branch refs become one packed-refs of `refs/heads` lines: the
/// loose files under `.git/refs/heads` (counted and size-checked first, then the first
/// [`LOOSE_REF_FILE_MAX`] + 1 bytes of each read by one `head`, at most
/// [`LOOSE_REFS_MAX`] of them kept by one `awk`; the first line of each, when it is a
/// commit id) over the clone's packed `refs/heads` lines, as git reads them. One file
/// instead of thousands: copying 5000 loose refs took 0.4 s. Loose symbolic refs and
/// names with white space are left out (git ignores the latter too); tags and remotes
/// are not needed.
pub(crate) fn safe_git_dir() -> String {
    let code = |t: TooLarge| t.code().to_string();
    SAFE_GIT_DIR
        .replace("@PACKED_REFS_MAX@", &PACKED_REFS_MAX.to_string())
        .replace("@INDEX_MAX@", &INDEX_MAX.to_string())
        .replace("@SMALL_FILE_MAX@", &SMALL_FILE_MAX.to_string())
        .replace("@LOOSE_REF_FILE_MAX@", &LOOSE_REF_FILE_MAX.to_string())
        .replace("@LOOSE_REFS_MAX@", &LOOSE_REFS_MAX.to_string())
        .replace("@LOOSE_LINES@", &(LOOSE_REFS_MAX + 2).to_string())
        .replace("@LOOSE_REF_READ@", &(LOOSE_REF_FILE_MAX + 1).to_string())
        .replace("@SHARED_INDEXES_MAX@", &SHARED_INDEXES_MAX.to_string())
        .replace("@PACKED_REFS@", &code(TooLarge::PackedRefs))
        .replace("@LOOSE_REFS@", &code(TooLarge::LooseRefs))
        .replace("@LOOSE_REF_FILE@", &code(TooLarge::LooseRefFile))
        .replace("@INDEX@", &code(TooLarge::Index))
        .replace("@SMALL_FILE@", &code(TooLarge::SmallFile))
        .replace("@SHARED_INDEXES@", &code(TooLarge::SharedIndexes))
}

/// [`safe_git_dir`]'s text before its bounds are filled in.
const SAFE_GIT_DIR: &str = r#"set -eu
umask 077
src=/repo/.git
g=/tmp/git
out=/tmp/out
format=$1
shift
if [ ! -d "$src" ] || [ -L "$src" ]; then
  echo "devaipod: the agent's clone has no .git directory" >&2
  exit 3
fi
mkdir -p "$g/refs/tags" "$g/info" "$g/objects" "$out"
refuse() { echo "devaipod: the agent's clone holds more than a job reads: $2" >&2; exit "$1"; }
over() { [ -n "$(find "$1" -prune -size +"$2"c)" ]; }
take() {
  if [ -f "$src/$1" ] && [ ! -L "$src/$1" ]; then
    if over "$src/$1" "$2"; then refuse "$3" ".git/$1 is larger than $2 bytes"; fi
    head -c "$(($2 + 1))" < "$src/$1" > "$g/$1"
    if over "$g/$1" "$2"; then refuse "$3" ".git/$1 is larger than $2 bytes"; fi
  fi
}
loose() {
  if [ "$(find "$1" | head -n @LOOSE_LINES@ | wc -l)" -gt $((@LOOSE_REFS_MAX@ + 1)) ]; then
    refuse @LOOSE_REFS@ ".git/refs/heads holds more than @LOOSE_REFS_MAX@ entries"
  fi
  if [ -n "$(find "$1" -type f -size +@LOOSE_REF_FILE_MAX@c | head -n 1)" ]; then
    refuse @LOOSE_REF_FILE@ "a file under .git/refs/heads is larger than @LOOSE_REF_FILE_MAX@ bytes"
  fi
}
take HEAD @SMALL_FILE_MAX@ @SMALL_FILE@
take packed-refs @PACKED_REFS_MAX@ @PACKED_REFS@
take index @INDEX_MAX@ @INDEX@
take shallow @SMALL_FILE_MAX@ @SMALL_FILE@
take info/exclude @SMALL_FILE_MAX@ @SMALL_FILE@
n=0
for f in "$src"/sharedindex.*; do
  [ -e "$f" ] || [ -L "$f" ] || continue
  n=$((n + 1))
  if [ "$n" -gt @SHARED_INDEXES_MAX@ ]; then
    refuse @SHARED_INDEXES@ "more than @SHARED_INDEXES_MAX@ .git/sharedindex.* files"
  fi
  take "${f#"$src/"}" @INDEX_MAX@ @INDEX@
done
case $format in sha256) hex=64 ;; *) hex=40 ;; esac
: >> "$g/packed-refs"
heads=
if [ -d "$src/refs/heads" ] && [ ! -L "$src/refs/heads" ]; then
  loose "$src/refs/heads"
  heads=$src/refs/heads
fi
{ [ -z "$heads" ] || find "$heads" -type f -exec head -v -c @LOOSE_REF_READ@ {} +; } | awk -v src="$src/" -v hex="$hex" -v max=@LOOSE_REFS_MAX@ '
phase == 1 {
  if (substr($0, 1, 4) == "==> " && substr($0, length($0) - 3) == " <==") {
    name = substr($0, 5, length($0) - 8); first = 1; next
  }
  if (first) {
    first = 0
    ref = substr(name, length(src) + 1)
    if (length($0) == hex && $0 !~ /[^0-9a-f]/ && index(name, src) == 1 && ref !~ /[ \t]/) {
      if (!(ref in loose) && ++n > max) { refused = 1; exit }
      loose[ref] = $0
    }
  }
  next
}
phase == 2 && NF == 2 && index($2, "refs/heads/") == 1 && !($2 in loose) { print }
END {
  if (refused) exit @LOOSE_REFS@
  for (ref in loose) print loose[ref] " " ref
}' phase=1 - phase=2 "$g/packed-refs" > "$g/packed-refs.new"
mv "$g/packed-refs.new" "$g/packed-refs"
mkdir -p "$g/refs/heads"
find "$g" ! -type f ! -type d -exec rm -f -- {} +
cat > "$g/config" <<CONFIG
[core]
	repositoryformatversion = 1
	bare = false
	hooksPath = /dev/null
	fsmonitor = false
	untrackedCache = false
[extensions]
	objectFormat = $format
[gc]
	auto = 0
[maintenance]
	auto = false
[diff]
	ignoreSubmodules = all
[status]
	submoduleSummary = false
[submodule]
	recurse = false
CONFIG
export GIT_DIR="$g" GIT_WORK_TREE=/repo GIT_OBJECT_DIRECTORY="$src/objects"
git() { command git -c core.fsmonitor=false -c core.hooksPath=/dev/null -c core.pager=cat "$@"; }
"#;

/// The environment of a clone job: no system, global or XDG config or attributes file
/// is read, replace refs are ignored, git never prompts.
fn job_env() -> BTreeMap<String, String> {
    [
        ("HOME", "/tmp"),
        ("XDG_CONFIG_HOME", "/tmp/.config"),
        ("GIT_CONFIG_NOSYSTEM", "1"),
        ("GIT_CONFIG_GLOBAL", "/dev/null"),
        ("GIT_ATTR_NOSYSTEM", "1"),
        ("GIT_NO_REPLACE_OBJECTS", "1"),
        ("GIT_TERMINAL_PROMPT", "0"),
        ("GIT_OPTIONAL_LOCKS", "0"),
        ("LC_ALL", "C"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// A short-lived helper container (a job, the toolbox helper) hardened like the agent:
/// its seccomp profile, no capabilities, no-new-privileges, a read-only root with a
/// tmpfs /tmp, the agent's default pids and memory limits, no init, `user`, and the one
/// read-only `mount` it works on.
pub(crate) fn helper_like_agent(
    name: String,
    image: &str,
    user: String,
    command: Vec<String>,
    mount: MountSpec,
    env: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
) -> ContainerSpec {
    ContainerSpec {
        role: Role::Helper,
        name,
        image: image.to_string(),
        command,
        user: Some(user),
        workdir: "/".into(),
        init: false,
        init_container: false,
        cap_drop: vec!["ALL".into()],
        cap_add: vec![],
        no_new_privileges: true,
        security_opt: vec![],
        seccomp: Seccomp::Agent,
        read_only: true,
        tmpfs: vec!["/tmp".into()],
        pids_limit: Some(crate::plan::AGENT_PIDS_LIMIT),
        memory_limit: Some(crate::plan::AGENT_MEMORY_LIMIT),
        cpu_millis: None,
        mounts: vec![MountSpec {
            read_only: true,
            ..mount
        }],
        shared_mounts: vec![],
        env,
        secrets: vec![],
        labels,
        extra: Default::default(),
    }
}

/// The plan of a job container: the agent's hardening (seccomp profile, no
/// capabilities, no-new-privileges, read-only root with a tmpfs /tmp, pids and memory
/// limits, uid), the clone read-only at [`CLONE_IN_JOB`].
pub(crate) fn clone_job_container(job: &CloneJob<'_>) -> ContainerSpec {
    let pod = job.name.pod_name();
    let uid = crate::plan::AGENT_UID;
    // The tmpfs goes when the job stops, so a job that succeeded says so on its output
    // and stays until devaipod has read its files. The line carries a random token:
    // nothing else in the job knows it, so no output of git's can end the job early.
    let mut command = vec![
        "/bin/sh".to_string(),
        "-c".into(),
        format!(
            "{}{}\necho \"${JOB_DONE_ENV}\"\nwhile :; do sleep 3600; done\n",
            safe_git_dir(),
            job.script
        ),
        "sh".into(),
        job.object_format.name().into(),
    ];
    let mut env = job_env();
    let token: String = (0..4).map(|_| crate::names::random_suffix()).collect();
    env.insert(JOB_DONE_ENV.into(), format!("devaipod-job-done-{token}"));
    command.extend(job.args.iter().map(|a| a.to_string()));
    helper_like_agent(
        format!("{pod}-job-{}", crate::names::random_suffix()),
        job.image,
        format!("{uid}:{uid}"),
        command,
        MountSpec {
            kind: crate::plan::MountKind::Volume,
            source: format!("{pod}-agent-repo"),
            target: CLONE_IN_JOB.into(),
            read_only: true,
        },
        env,
        labels::for_object(job.name, Role::Helper, job.repo, &BTreeMap::new()),
    )
}

impl Engine {
    /// Creates the job container `c`, verifies its hardening (failing closed, as for
    /// the agent), runs it for at most [`JOB_TIMEOUT`] and removes it: its exit code,
    /// its output, and what `fetch` asks for from its filesystem.
    pub(crate) async fn run_job(
        &self,
        c: &ContainerSpec,
        mut fetch: Option<Fetch<'_>>,
    ) -> Result<JobOutput> {
        let name = c.name.clone();
        let timeout = job_timeout();
        // An interrupt stops the job where it is; the container goes all the same.
        let mut cancel = super::cancel::current();
        let result = super::cancel::cancellable(&mut cancel, async {
            let seccomp = spec::SeccompFile::write()?;
            // Podman's info answers slowly (a third of a second on Podman 4.3): asked
            // while the container is made.
            let spec = spec::job_spec(c, Some(seccomp.path()), JOB_TMPFS_BYTES);
            let (created, cgroups) =
                tokio::join!(self.create_container(&spec), self.cgroup_version());
            created.with_context(|| format!("creating container {name}"))?;
            drop(seccomp);
            let enforced = verify::limits_enforced(self.rootless(), &cgroups?);
            verify::verify_created(self, c, enforced).await?;
            let done = c
                .env
                .get(JOB_DONE_ENV)
                .ok_or_else(|| anyhow!("the job {name} has no {JOB_DONE_ENV}"))?;
            self.start_container(&name).await?;
            let Ok(ended) = tokio::time::timeout(timeout, self.job_outcome(&name, done)).await
            else {
                return Err(anyhow!(JobTimedOut(timeout)));
            };
            let (code, logs) = ended?;
            tracing::debug!(job = %name, code, logs = ?logs, "job ended");
            let mut out = JobOutput {
                code,
                logs,
                files: Vec::new(),
                copied: false,
            };
            match &mut fetch {
                Some(Fetch::Tree { path, limit }) => {
                    out.files = self.read_tree_within(&name, path, *limit).await?;
                }
                Some(Fetch::File { path, limit, dest }) => {
                    out.copied = self.copy_file_out(&name, path, *limit, dest).await?;
                }
                None => {}
            }
            Ok::<_, anyhow::Error>(out)
        })
        .await;
        // Killed at once: a removal would first wait for the stop timeout.
        let kill = format!("/libpod/containers/{}/kill?signal=KILL", encode(&name));
        let _ = self.post(&kill, &()).await;
        self.delete_if_present(
            &format!("/libpod/containers/{}?force=true&v=true", encode(&name)),
            || format!("removing {name}"),
        )
        .await?;
        result.with_context(|| format!("running {name}"))
    }
}

impl Engine {
    /// Follows a started job's output until it prints `done` (exit code 0; it stays
    /// running so its files can be read) or ends (its exit code): the code and at most
    /// [`JOB_LOG_LIMIT`] bytes of output.
    async fn job_outcome(&self, name: &str, done: &str) -> Result<(i64, String)> {
        use futures_util::StreamExt as _;
        let opts = super::logs::LogOptions {
            follow: true,
            tail: None,
        };
        let needle = done.as_bytes();
        let mut stream = self.logs(name, opts);
        let mut logs: Vec<u8> = Vec::new();
        let mut window: Vec<u8> = Vec::new();
        let mut finished = false;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            let bytes = chunk.bytes();
            window.extend_from_slice(bytes);
            if window.windows(needle.len()).any(|w| w == needle) {
                finished = true;
                break;
            }
            window.drain(..window.len().saturating_sub(needle.len()));
            let room = JOB_LOG_LIMIT.saturating_sub(logs.len());
            logs.extend_from_slice(&bytes[..bytes.len().min(room)]);
        }
        drop(stream);
        let code = if finished {
            0
        } else {
            self.wait_stopped(name).await?
        };
        Ok((code, String::from_utf8_lossy(&logs).into_owned()))
    }
}

/// A job ran past its time and was killed and removed.
#[derive(Debug, thiserror::Error)]
#[error("it ran longer than {}s and was stopped", .0.as_secs())]
pub(crate) struct JobTimedOut(pub Duration);

/// Fails when the job's error is a [`JobTimedOut`], naming the pod and what to do.
pub(crate) fn explain_timeout(e: anyhow::Error, name: &Name) -> anyhow::Error {
    match e.downcast_ref::<JobTimedOut>() {
        Some(t) => anyhow!(
            "reading the agent's clone of {name} ({}) took longer than {}s, so devaipod stopped and removed the job: the clone may be very large or made to stall git (look at it with `devaipod exec {name} --container agent`); `devaipod delete {name} --force` deletes the workspace without reading it",
            name.pod_name(),
            t.0.as_secs()
        ),
        None => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clone_jobs_are_labelled_and_hardened() {
        let name = Name::new("demo").expect("name");
        let job = CloneJob {
            name: &name,
            repo: "/home/u/src/proj",
            image: "localhost/devaipod-base:latest",
            object_format: ObjectFormat::Sha1,
            script: "echo $1",
            args: &["x"],
        };
        let c = clone_job_container(&job);
        assert!(c.name.starts_with("devaipod-demo-job-"), "{}", c.name);
        for key in [labels::POD, labels::ROLE, labels::REPO, labels::VERSION] {
            assert!(c.labels.contains_key(key), "{key}");
        }
        assert_eq!(c.labels[labels::ROLE], "helper");
        assert_eq!(c.command[4..], ["sha1", "x"]);
        assert!(
            c.command[2].starts_with(&safe_git_dir()),
            "{}",
            c.command[2]
        );
        assert_eq!(c.cap_drop, ["ALL"]);
        assert!(c.cap_add.is_empty());
        assert!(c.no_new_privileges);
        assert_eq!(c.seccomp, Seccomp::Agent);
        assert!(c.read_only);
        assert_eq!(c.tmpfs, ["/tmp"]);
        assert_eq!(c.pids_limit, Some(crate::plan::AGENT_PIDS_LIMIT));
        assert_eq!(c.memory_limit, Some(crate::plan::AGENT_MEMORY_LIMIT));
        assert_eq!(c.user.as_deref(), Some("4096:4096"));
        assert_eq!(c.env["GIT_CONFIG_GLOBAL"], "/dev/null");
        assert_eq!(c.env["GIT_CONFIG_NOSYSTEM"], "1");
        assert_eq!(c.mounts[0].source, "devaipod-demo-agent-repo");
        assert!(c.mounts[0].read_only);
        // The spec sent for it is verified against the same plan.
        let seccomp = std::path::Path::new("/tmp/p/agent.json");
        let v =
            serde_json::to_value(spec::job_spec(&c, Some(seccomp), JOB_TMPFS_BYTES)).expect("json");
        assert_eq!(v["volumes"][0]["Options"][0], "ro");
        assert_eq!(v["user"], "4096:4096");
        assert_eq!(v["read_only_filesystem"], true);
        assert_eq!(v["seccomp_profile_path"], "/tmp/p/agent.json");
        assert_eq!(
            v["resource_limits"]["pids"]["limit"],
            crate::plan::AGENT_PIDS_LIMIT
        );
        assert_eq!(v["mounts"][0]["destination"], "/tmp");
        // And the verify path the agent goes through accepts only what was asked.
        let mut inspect: serde_json::Value =
            serde_json::from_str(super::super::inspect::fixtures::AGENT).expect("json");
        inspect["Name"] = c.name.clone().into();
        inspect["Config"]["User"] = "4096:4096".into();
        inspect["Mounts"] = serde_json::json!([{"Type": "volume", "Name": "devaipod-demo-agent-repo", "Destination": "/repo", "RW": false}]);
        inspect["HostConfig"]["Init"] = false.into();
        inspect["Path"] = c.command[0].clone().into();
        inspect["Args"] = c.command[1..].into();
        let ok = verify::verify_inspect_text(&c, &inspect.to_string(), true);
        assert!(ok.is_ok(), "{ok:?}");
        for (key, bad) in [
            ("SecurityOpt", serde_json::json!(["no-new-privileges"])),
            ("ReadonlyRootfs", serde_json::json!(false)),
            ("PidsLimit", serde_json::json!(0)),
        ] {
            let mut worse = inspect.clone();
            worse["HostConfig"][key] = bad;
            assert!(
                verify::verify_inspect_text(&c, &worse.to_string(), true).is_err(),
                "{key}"
            );
        }
    }
}

#[cfg(test)]
mod bound_tests {
    use super::*;

    #[test]
    fn refusals_have_codes_of_their_own_and_say_what_to_do() {
        let name = Name::new("demo").expect("name");
        let mut codes: Vec<i64> = TooLarge::ALL.iter().map(|t| t.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), TooLarge::ALL.len());
        for t in TooLarge::ALL {
            // Not the script's own "no .git" (3), not sh's or git's.
            assert!((4..126).contains(&t.code()), "{t:?}");
            assert_eq!(TooLarge::of_code(t.code()), Some(t));
            let e = format!("{:#}", explain_too_large(t.code(), &name).expect("refusal"));
            for want in [
                "devaipod-demo-agent-repo",
                "devaipod exec demo --container agent",
                "devaipod delete demo --force",
                "was not read",
            ] {
                assert!(e.contains(want), "{want} in {e}");
            }
        }
        for other in [0, 1, 2, 3, 126, 127, 128, 129, 137, -1] {
            assert!(explain_too_large(other, &name).is_none(), "{other}");
        }
        let e = format!(
            "{:#}",
            explain_too_large(TooLarge::PackedRefs.code(), &name).expect("refusal")
        );
        assert!(e.contains(".git/packed-refs is larger than 64 MiB"), "{e}");
    }

    #[test]
    fn the_script_names_every_bound() {
        let script = safe_git_dir();
        let unfilled = script
            .split('@')
            .skip(1)
            .any(|rest| rest.starts_with(|c: char| c.is_ascii_uppercase()));
        assert!(!unfilled, "a bound left unfilled: {script}");
        for (want, why) in [
            (
                format!("take packed-refs {PACKED_REFS_MAX} 10"),
                "packed-refs",
            ),
            (format!("take index {INDEX_MAX} 13"), "index"),
            (format!("take HEAD {SMALL_FILE_MAX} 14"), "HEAD"),
            (format!("head -n {}", LOOSE_REFS_MAX + 2), "loose refs"),
            (format!("-size +{LOOSE_REF_FILE_MAX}c"), "a loose ref"),
        ] {
            assert!(script.contains(&want), "{why}: {want} in {script}");
        }
        // No copy of the clone's files reads more than its bound (plus the byte that
        // shows it is over): no `cp`, loose refs read by `head -c`.
        assert!(!script.contains("cp "), "{script}");
        assert!(
            script.contains(&format!("head -v -c {} ", LOOSE_REF_FILE_MAX + 1)),
            "{script}"
        );
    }
}

#[cfg(test)]
mod format_tests {
    use super::*;

    #[test]
    fn object_formats_come_from_the_base_commit() {
        assert_eq!(
            ObjectFormat::of_commit(&"a".repeat(40)),
            Some(ObjectFormat::Sha1)
        );
        assert_eq!(
            ObjectFormat::of_commit(&"0".repeat(64)),
            Some(ObjectFormat::Sha256)
        );
        for bad in ["", "abc", &"g".repeat(40), &"é".repeat(20), &"a".repeat(41)] {
            assert_eq!(ObjectFormat::of_commit(bad), None, "{bad}");
        }
    }
}

/// The name prefix of `doctor`'s probe containers.
pub(crate) const PROBE_PREFIX: &str = "devaipod-doctor-probe-";

/// `doctor`'s probe: `image`'s `opencode --version`, run hardened like the agent (its
/// uid, seccomp profile, no capabilities, read-only root, limits), with nothing of the
/// host mounted (an empty tmpfs is its one mount). It proves on this machine that a
/// container hardened as the agent is starts, and that the image's opencode runs there.
/// It exits when done (no files are read from it), so a doctor killed before removing
/// it leaves a stopped container, never a running one.
pub(crate) fn probe_container(image: &str, opencode: &str) -> ContainerSpec {
    let uid = crate::plan::AGENT_UID;
    let mut env: BTreeMap<String, String> = [("HOME", "/tmp"), ("XDG_CACHE_HOME", "/tmp")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let token: String = (0..4).map(|_| crate::names::random_suffix()).collect();
    env.insert(JOB_DONE_ENV.into(), format!("devaipod-job-done-{token}"));
    let object_labels = [
        (labels::ROLE.to_string(), Role::Helper.as_str().to_string()),
        (labels::VERSION.to_string(), crate::VERSION.to_string()),
    ]
    .into();
    helper_like_agent(
        format!("{PROBE_PREFIX}{}", crate::names::random_suffix()),
        image,
        format!("{uid}:{uid}"),
        vec![
            "/bin/sh".into(),
            "-c".into(),
            format!("\"$1\" --version || exit $?\necho \"${JOB_DONE_ENV}\"\n"),
            "sh".into(),
            opencode.into(),
        ],
        MountSpec {
            kind: crate::plan::MountKind::Tmpfs,
            source: String::new(),
            target: "/devaipod-probe".into(),
            read_only: true,
        },
        env,
        object_labels,
    )
}
