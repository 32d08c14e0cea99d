//! The proxy's state directory (a volume of the proxy container, owned by its uid):
//!
//! - `allow.json`: the effective allowlist, a JSON array of entries in canonical spelling
//!   (`["example.com", "*.example.org:8443"]`). The proxy writes it from the
//!   configuration's `allow` when it is missing; `devaipod-net allow` edits it; the
//!   running proxy re-reads it when its inode, size or mtime change (one `stat` per
//!   request).
//! - `stats.json`: the proxy's decision counts and its last refusals (see [`StatsReport`]),
//!   written by the proxy (atomically) on each refusal and otherwise at most four times a
//!   second; `devaipod-net stats` prints it.
//!
//! Every write is a temporary file in the same directory renamed over the old one, so a
//! reader sees the old file or the new one, never half of one.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::policy::{Allowlist, Entry};

pub(crate) const ALLOW_FILE: &str = "allow.json";
pub(crate) const STATS_FILE: &str = "stats.json";
/// Taken (flock) by `allow` around its read-change-write, so that two edits at once both
/// land.
const LOCK_FILE: &str = "allow.lock";
/// How many refusals `stats.json` keeps.
pub(crate) const LAST_REFUSED: usize = 10;

/// `devaipod-net allow`: applies the additions, then the removals, to `allow.json` and
/// prints the resulting list (one entry a line, or a JSON array with `--json`).
pub(crate) fn allow_command(
    dir: &Path,
    add: &[String],
    remove: &[String],
    json: bool,
) -> Result<()> {
    let list = if add.is_empty() && remove.is_empty() {
        read_allowlist(dir)?
    } else {
        edit_allowlist(dir, add, remove)?
    };
    let entries = list.to_strings();
    if json {
        println!("{}", serde_json::to_string(&entries)?);
    } else if entries.is_empty() {
        println!("(the allowlist is empty: no names are allowed)");
    } else {
        for entry in entries {
            println!("{entry}");
        }
    }
    Ok(())
}

/// `devaipod-net stats`: prints `stats.json` (as it is with `--json`).
pub(crate) fn stats_command(dir: &Path, json: bool) -> Result<()> {
    let report = read_stats(dir)?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    println!(
        "allowed {}, refused {}, failed {} since {} (updated {})",
        report.allowed, report.refused, report.failed, report.started, report.updated
    );
    if report.last_refused.is_empty() {
        println!("no refusals");
    } else {
        println!("last refused (newest first):");
        for r in &report.last_refused {
            let port = r.port.map(|p| format!(":{p}")).unwrap_or_default();
            println!("  {} {} {}{} {}", r.time, r.method, r.name, port, r.reason);
        }
    }
    Ok(())
}

fn allow_path(dir: &Path) -> PathBuf {
    dir.join(ALLOW_FILE)
}

/// Reads `allow.json`; fails when it is missing or holds anything but valid entries.
pub(crate) fn read_allowlist(dir: &Path) -> Result<Allowlist> {
    let path = allow_path(dir);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "{} does not exist: the proxy creates it when it starts (is this the proxy's state directory?)",
            path.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    parse_allow_json(&text).with_context(|| format!("reading the allowlist {}", path.display()))
}

fn parse_allow_json(text: &str) -> Result<Allowlist> {
    let entries: Vec<String> = serde_json::from_str(text)
        .context("it is not a JSON array of strings (write it with devaipod-net allow)")?;
    Ok(Allowlist::parse(&entries)?)
}

fn write_allowlist(dir: &Path, list: &Allowlist) -> Result<()> {
    let mut text = serde_json::to_string_pretty(&list.to_strings())?;
    text.push('\n');
    write_atomic(dir, ALLOW_FILE, text.as_bytes(), true)
}

/// At the proxy's start: writes `allow.json` from `initial` when it is missing, and
/// returns the list it holds (checked: a bad file stops the start, naming the entry).
pub(crate) fn init_allowlist(dir: &Path, initial: &Allowlist) -> Result<Allowlist> {
    let _lock = lock(dir)?;
    if allow_path(dir).exists() {
        read_allowlist(dir)
    } else {
        write_allowlist(dir, initial)?;
        Ok(initial.clone())
    }
}

/// Adds, then removes, entries (each checked first: one bad entry changes nothing).
/// Adding an entry that is there, or removing one that is not, changes nothing.
pub(crate) fn edit_allowlist(dir: &Path, add: &[String], remove: &[String]) -> Result<Allowlist> {
    let parse = |texts: &[String]| -> Result<Vec<Entry>> {
        texts
            .iter()
            .map(|t| Entry::parse(t).map_err(anyhow::Error::from))
            .collect()
    };
    let add = parse(add)?;
    let remove = parse(remove)?;
    let _lock = lock(dir)?;
    let mut list = read_allowlist(dir)?;
    for entry in add {
        list.add(entry);
    }
    for entry in &remove {
        list.remove(entry);
    }
    write_allowlist(dir, &list)?;
    Ok(list)
}

fn lock(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening the lock {}", path.display()))?;
    file.lock()
        .with_context(|| format!("locking {}", path.display()))?;
    Ok(file)
}

/// Writes `dir/name` by renaming a temporary file over it; `sync` flushes the data to
/// disk first (for the allowlist, which must survive a crash; not for the counts).
fn write_atomic(dir: &Path, name: &str, bytes: &[u8], sync: bool) -> Result<()> {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.{}.{seq}.tmp", std::process::id()));
    let target = dir.join(name);
    let written = (|| -> std::io::Result<()> {
        let mut file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        file.write_all(bytes)?;
        if sync {
            file.sync_all()?;
        }
        fs::rename(&tmp, &target)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", target.display()));
    }
    Ok(())
}

/// The running proxy's view of `allow.json`: re-read when the file changes.
pub(crate) struct LiveAllowlist {
    path: PathBuf,
    cached: Mutex<Cached>,
}

struct Cached {
    stamp: Option<Stamp>,
    list: Arc<Allowlist>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

/// The allowlist to decide with, and what changed (for the log) when the file did.
pub(crate) struct Current {
    pub(crate) list: Arc<Allowlist>,
    /// Some when the file changed since the last look: Ok(entries) when it was read,
    /// Err(why) when it could not be (every name is refused until it is fixed).
    pub(crate) reloaded: Option<Result<usize, String>>,
}

impl LiveAllowlist {
    /// Starts from the list `init_allowlist` returned, for the file as it is now.
    pub(crate) fn new(dir: &Path, list: Allowlist) -> Self {
        let path = allow_path(dir);
        let stamp = stamp_of(&path);
        LiveAllowlist {
            path,
            cached: Mutex::new(Cached {
                stamp,
                list: Arc::new(list),
            }),
        }
    }

    pub(crate) fn current(&self) -> Current {
        let stamp = stamp_of(&self.path);
        let mut cached = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
        if stamp.is_some() && stamp == cached.stamp {
            return Current {
                list: cached.list.clone(),
                reloaded: None,
            };
        }
        if stamp.is_none() && cached.stamp.is_none() {
            // Still missing: still refusing everything (logged when it went).
            return Current {
                list: cached.list.clone(),
                reloaded: None,
            };
        }
        let read = fs::read_to_string(&self.path)
            .map_err(anyhow::Error::from)
            .and_then(|text| parse_allow_json(&text));
        let (list, reloaded) = match read {
            Ok(list) => {
                let n = list.entries().len();
                (list, Ok(n))
            }
            Err(e) => (
                Allowlist::default(),
                Err(format!("{}: {e:#}", self.path.display())),
            ),
        };
        cached.stamp = stamp;
        cached.list = Arc::new(list);
        Current {
            list: cached.list.clone(),
            reloaded: Some(reloaded),
        }
    }
}

fn stamp_of(path: &Path) -> Option<Stamp> {
    let meta = fs::metadata(path).ok()?;
    Some(Stamp {
        dev: meta.dev(),
        ino: meta.ino(),
        len: meta.len(),
        mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
    })
}

/// `stats.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StatsReport {
    /// When the proxy started (RFC 3339, UTC); the counts are since then.
    pub(crate) started: String,
    /// When the file was written.
    pub(crate) updated: String,
    /// Connections and requests passed on.
    pub(crate) allowed: u64,
    /// Requests the policy refused (403, 400, 404).
    pub(crate) refused: u64,
    /// Allowed requests that failed upstream (no address, no connection: 502, 504).
    pub(crate) failed: u64,
    /// The last refusals, newest first, at most [`LAST_REFUSED`].
    pub(crate) last_refused: Vec<RefusedItem>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RefusedItem {
    pub(crate) time: String,
    /// CONNECT, the HTTP method of a plain request, or `credential`.
    pub(crate) method: String,
    /// The requested host (only its name characters, see `policy::printable`), or `-`.
    pub(crate) name: String,
    pub(crate) port: Option<u16>,
    /// The reason code (`policy::Reason::code`).
    pub(crate) reason: String,
}

fn read_stats(dir: &Path) -> Result<StatsReport> {
    let path = dir.join(STATS_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "{} does not exist: the proxy writes it when it starts (is the proxy running, and is this its state directory?)",
            path.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// The proxy's counts, kept in memory and written to `stats.json`.
pub(crate) struct Stats {
    dir: PathBuf,
    report: Mutex<StatsReport>,
    dirty: AtomicBool,
    /// The last write error, so that a failing disk is logged once, not per request.
    last_error: Mutex<Option<String>>,
}

impl Stats {
    /// Starts from zero and writes the file.
    pub(crate) fn start(dir: &Path) -> Result<Stats> {
        let now = utc_now();
        let stats = Stats {
            dir: dir.to_path_buf(),
            report: Mutex::new(StatsReport {
                started: now.clone(),
                updated: now,
                allowed: 0,
                refused: 0,
                failed: 0,
                last_refused: Vec::new(),
            }),
            dirty: AtomicBool::new(false),
            last_error: Mutex::new(None),
        };
        stats.write_now()?;
        Ok(stats)
    }

    pub(crate) fn count_allowed(&self) {
        self.report().allowed += 1;
        self.dirty.store(true, Ordering::Release);
    }

    pub(crate) fn count_failed(&self) {
        self.report().failed += 1;
        self.dirty.store(true, Ordering::Release);
    }

    /// Counts a refusal and writes the file now; returns a write error to log, once.
    pub(crate) fn count_refused(&self, item: RefusedItem) -> Option<String> {
        {
            let mut report = self.report();
            report.refused += 1;
            report.last_refused.insert(0, item);
            report.last_refused.truncate(LAST_REFUSED);
        }
        self.write_logging_once()
    }

    /// Writes the file when a count changed since the last write (the proxy calls this
    /// a few times a second); returns a write error to log, once.
    pub(crate) fn flush(&self) -> Option<String> {
        if !self.dirty.load(Ordering::Acquire) {
            return None;
        }
        self.write_logging_once()
    }

    fn report(&self) -> std::sync::MutexGuard<'_, StatsReport> {
        self.report.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_logging_once(&self) -> Option<String> {
        let result = self.write_now().map_err(|e| format!("{e:#}"));
        let mut last = self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match result {
            Ok(()) => {
                *last = None;
                None
            }
            Err(e) if last.as_deref() == Some(e.as_str()) => None,
            Err(e) => {
                *last = Some(e.clone());
                Some(e)
            }
        }
    }

    fn write_now(&self) -> Result<()> {
        // The lock is held across the write so that two writers cannot rename an older
        // report over a newer one.
        let mut report = self.report();
        self.dirty.store(false, Ordering::Release);
        report.updated = utc_now();
        let mut text = serde_json::to_string_pretty(&*report)?;
        text.push('\n');
        write_atomic(&self.dir, STATS_FILE, text.as_bytes(), false)
    }
}

/// Now, as RFC 3339 UTC with milliseconds: `2026-12-02T00:39:04.123Z`.
pub(crate) fn utc_now() -> String {
    rfc3339(SystemTime::now())
}

pub(crate) fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`, for non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use super::*;

    /// A fresh directory under the target's temporary directory, removed on drop.
    pub(crate) struct TempDir(PathBuf);

    impl TempDir {
        pub(crate) fn new(tag: &str) -> Self {
            static N: AtomicU64 = AtomicU64::new(0);
            let path = std::env::temp_dir().join(format!(
                "devaipod-net-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(&path).expect("creating a temporary directory");
            TempDir(path)
        }

        pub(crate) fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn list(entries: &[&str]) -> Allowlist {
        Allowlist::parse(entries).expect("valid entries")
    }

    fn strings(texts: &[&str]) -> Vec<String> {
        texts.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn rfc3339_formats_utc_with_milliseconds() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(951_782_400_123); // leap day 2000
        assert_eq!(rfc3339(t), "2000-02-29T00:00:00.123Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_798_761_599); // last second of 2026
        assert_eq!(rfc3339(t), "2026-12-31T23:59:59.000Z");
        let t = UNIX_EPOCH + Duration::from_secs(4_107_542_400); // 2100-03-01 (2100 is no leap year)
        assert_eq!(rfc3339(t), "2100-03-01T00:00:00.000Z");
    }

    #[test]
    fn init_writes_the_initial_list_once_and_then_keeps_the_file() {
        let dir = TempDir::new("init");
        let first = init_allowlist(dir.path(), &list(&["a.example", "B.example."])).expect("init");
        assert_eq!(first.to_strings(), ["a.example", "b.example"]);
        let text = fs::read_to_string(dir.path().join(ALLOW_FILE)).expect("written");
        let on_disk: Vec<String> = serde_json::from_str(&text).expect("a JSON array");
        assert_eq!(on_disk, ["a.example", "b.example"]);
        // A later start with another configured list keeps what `allow` made of it.
        let again = init_allowlist(dir.path(), &list(&["c.example"])).expect("init");
        assert_eq!(again.to_strings(), ["a.example", "b.example"]);
    }

    #[test]
    fn init_refuses_a_bad_file_naming_it_and_the_entry() {
        let dir = TempDir::new("init-bad");
        fs::write(
            dir.path().join(ALLOW_FILE),
            r#"["ok.example", "127.0.0.1"]"#,
        )
        .expect("write");
        let err = format!(
            "{:#}",
            init_allowlist(dir.path(), &list(&[])).expect_err("bad")
        );
        assert!(
            err.contains(ALLOW_FILE) && err.contains("\"127.0.0.1\""),
            "{err}"
        );
        fs::write(dir.path().join(ALLOW_FILE), r#"{"allow": []}"#).expect("write");
        let err = format!(
            "{:#}",
            init_allowlist(dir.path(), &list(&[])).expect_err("bad")
        );
        assert!(err.contains("not a JSON array of strings"), "{err}");
    }

    #[test]
    fn edits_add_then_remove_and_write_atomically() {
        let dir = TempDir::new("edit");
        init_allowlist(dir.path(), &list(&["a.example"])).expect("init");
        let after = edit_allowlist(
            dir.path(),
            &strings(&["B.example", "a.example", "*.c.example:8443"]),
            &strings(&["a.example", "not-there.example"]),
        )
        .expect("edit");
        assert_eq!(after.to_strings(), ["b.example", "*.c.example:8443"]);
        assert_eq!(read_allowlist(dir.path()).expect("read"), after);
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    }

    #[test]
    fn an_edit_with_one_bad_name_changes_nothing() {
        let dir = TempDir::new("edit-bad");
        init_allowlist(dir.path(), &list(&["a.example"])).expect("init");
        let err = edit_allowlist(dir.path(), &strings(&["ok.example", "0x7f000001"]), &[])
            .expect_err("refused");
        assert!(
            err.to_string().contains("\"0x7f000001\": is an IP address"),
            "{err}"
        );
        assert_eq!(
            read_allowlist(dir.path()).expect("read").to_strings(),
            ["a.example"]
        );
    }

    #[test]
    fn an_edit_without_the_file_says_where_it_looked() {
        let dir = TempDir::new("edit-missing");
        let err = edit_allowlist(dir.path(), &strings(&["a.example"]), &[]).expect_err("missing");
        assert!(
            err.to_string()
                .contains("the proxy creates it when it starts"),
            "{err}"
        );
    }

    #[test]
    fn the_live_list_follows_the_file() {
        let dir = TempDir::new("live");
        let initial = init_allowlist(dir.path(), &list(&["a.example"])).expect("init");
        let live = LiveAllowlist::new(dir.path(), initial);
        let now = live.current();
        assert!(now.reloaded.is_none());
        assert!(now.list.allows("a.example", 443));

        edit_allowlist(dir.path(), &strings(&["b.example"]), &[]).expect("edit");
        let now = live.current();
        assert_eq!(now.reloaded, Some(Ok(2)));
        assert!(now.list.allows("b.example", 443));
        assert!(live.current().reloaded.is_none(), "reloaded only once");

        // A broken file (written by hand) refuses everything, and says why, once.
        fs::write(dir.path().join(ALLOW_FILE), "[\"b.example\", 7]").expect("write");
        let now = live.current();
        assert!(
            matches!(&now.reloaded, Some(Err(e)) if e.contains(ALLOW_FILE)),
            "{:?}",
            now.reloaded
        );
        assert!(!now.list.allows("b.example", 443));

        fs::remove_file(dir.path().join(ALLOW_FILE)).expect("remove");
        let now = live.current();
        assert!(matches!(&now.reloaded, Some(Err(_))));
        assert!(now.list.entries().is_empty());
        assert!(live.current().reloaded.is_none());

        edit_allowlist(dir.path(), &[], &[]).expect_err("missing file");
        fs::write(dir.path().join(ALLOW_FILE), "[\"c.example\"]").expect("write");
        let now = live.current();
        assert_eq!(now.reloaded, Some(Ok(1)));
        assert!(now.list.allows("c.example", 80));
    }

    fn refused(name: &str) -> RefusedItem {
        RefusedItem {
            time: utc_now(),
            method: "CONNECT".into(),
            name: name.into(),
            port: Some(443),
            reason: "not-allowed".into(),
        }
    }

    #[test]
    fn stats_are_written_at_start_on_each_refusal_and_on_flush() {
        let dir = TempDir::new("stats");
        let stats = Stats::start(dir.path()).expect("start");
        let zero = read_stats(dir.path()).expect("written at start");
        assert_eq!((zero.allowed, zero.refused, zero.failed), (0, 0, 0));

        stats.count_allowed();
        stats.count_failed();
        assert_eq!(
            read_stats(dir.path()).expect("read").allowed,
            0,
            "not yet flushed"
        );
        assert_eq!(stats.flush(), None);
        let flushed = read_stats(dir.path()).expect("read");
        assert_eq!((flushed.allowed, flushed.failed), (1, 1));

        for i in 0..12 {
            assert_eq!(stats.count_refused(refused(&format!("n{i}.example"))), None);
            assert_eq!(read_stats(dir.path()).expect("read").refused, i + 1);
        }
        let report = read_stats(dir.path()).expect("read");
        let names: Vec<_> = report
            .last_refused
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(names.len(), LAST_REFUSED);
        assert_eq!(names[0], "n11.example");
        assert_eq!(names[9], "n2.example");
    }

    #[test]
    fn a_failing_stats_write_is_reported_once() {
        let dir = TempDir::new("stats-fail");
        let stats = Stats::start(dir.path()).expect("start");
        fs::remove_dir_all(dir.path()).expect("remove the directory");
        let first = stats.count_refused(refused("a.example"));
        assert!(first.is_some_and(|e| e.contains(STATS_FILE)));
        assert_eq!(stats.count_refused(refused("b.example")), None);
    }
}
