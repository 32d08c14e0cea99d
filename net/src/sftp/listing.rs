//! How the SFTP server shows a file: its attributes on the wire, and the `ls -l` line
//! (the "longname") OpenSSH's `sftp` prints for `ls -l`, with user and group names read
//! from the container's own /etc/passwd and /etc/group (no NSS in a static binary).

use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use chrono::{DateTime, Local};
use russh_sftp::protocol::FileAttributes;

/// The attributes SFTP version 3 carries: size, owner, mode (with the file's type),
/// access and modification times (seconds, 32 bits on the wire).
pub(crate) fn attrs_of(md: &Metadata) -> FileAttributes {
    FileAttributes {
        size: Some(md.size()),
        uid: Some(md.uid()),
        user: None,
        gid: Some(md.gid()),
        group: None,
        permissions: Some(md.mode()),
        atime: Some(wire_time(md.atime())),
        mtime: Some(wire_time(md.mtime())),
    }
}

/// A time as SFTP version 3 sends it: seconds since 1970 in 32 bits (before 1970: 0).
fn wire_time(secs: i64) -> u32 {
    u32::try_from(secs.max(0)).unwrap_or(u32::MAX)
}

/// The users and groups of the container, by id, and the users' home directories.
#[derive(Debug, Default)]
pub(crate) struct Names {
    users: HashMap<u32, String>,
    groups: HashMap<u32, String>,
    homes: HashMap<String, PathBuf>,
}

impl Names {
    /// Reads /etc/passwd and /etc/group; a file that cannot be read leaves numbers.
    pub(crate) fn load() -> Self {
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
        Self::parse(&passwd, &group)
    }

    pub(super) fn parse(passwd: &str, group: &str) -> Self {
        let mut names = Names::default();
        for fields in colon_lines(passwd) {
            if let (Some(name), Some(id)) = (fields.first(), id_field(&fields)) {
                names.users.entry(id).or_insert_with(|| name.to_string());
                if let Some(home) = fields.get(5).filter(|h| !h.is_empty()) {
                    names
                        .homes
                        .entry(name.to_string())
                        .or_insert_with(|| PathBuf::from(home));
                }
            }
        }
        for fields in colon_lines(group) {
            if let (Some(name), Some(id)) = (fields.first(), id_field(&fields)) {
                names.groups.entry(id).or_insert_with(|| name.to_string());
            }
        }
        names
    }

    fn user(&self, uid: u32) -> String {
        self.users
            .get(&uid)
            .cloned()
            .unwrap_or_else(|| uid.to_string())
    }

    fn group(&self, gid: u32) -> String {
        self.groups
            .get(&gid)
            .cloned()
            .unwrap_or_else(|| gid.to_string())
    }

    /// The home directory of the user named `name`.
    pub(crate) fn home_of(&self, name: &str) -> Option<PathBuf> {
        self.homes.get(name).cloned()
    }

    /// The home directory of the user with id `uid`.
    pub(crate) fn home_of_uid(&self, uid: u32) -> Option<PathBuf> {
        self.users.get(&uid).and_then(|n| self.home_of(n))
    }
}

fn colon_lines(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(':').collect::<Vec<_>>())
}

fn id_field(fields: &[&str]) -> Option<u32> {
    fields.get(2).and_then(|id| id.parse().ok())
}

/// The line `ls -l` prints for `name`, in OpenSSH's sftp-server's layout:
/// `-rw-r--r--    1 user     group        1234 Jan  2 03:04 name`.
pub(crate) fn longname(name: &str, md: &Metadata, names: &Names, now: i64) -> String {
    let user = names.user(md.uid());
    let group = names.group(md.gid());
    format!(
        "{} {:>3} {user:<8} {group:<8} {:>8} {} {name}",
        mode_string(md.mode()),
        md.nlink(),
        md.size(),
        ls_time(md.mtime(), now)
    )
}

/// `ls`'s time: hour and minute within six months of now, else the year.
fn ls_time(mtime: i64, now: i64) -> String {
    const SIX_MONTHS: i64 = 365 * 24 * 60 * 60 / 2;
    let Some(t) = DateTime::from_timestamp(mtime, 0) else {
        return "?".into();
    };
    let t = t.with_timezone(&Local);
    if now - SIX_MONTHS < mtime && mtime < now + SIX_MONTHS {
        t.format("%b %e %H:%M").to_string()
    } else {
        t.format("%b %e  %Y").to_string()
    }
}

/// `drwxr-xr-x ` as BSD's strmode writes it (with its trailing space): the type, then
/// rwx for owner, group and others, with setuid, setgid and sticky as s/S and t/T.
pub(crate) fn mode_string(mode: u32) -> String {
    let kind = match mode & 0o170000 {
        0o040000 => 'd',
        0o120000 => 'l',
        0o020000 => 'c',
        0o060000 => 'b',
        0o010000 => 'p',
        0o140000 => 's',
        _ => '-',
    };
    let mut s = String::with_capacity(11);
    s.push(kind);
    for (shift, special, set, unset) in [
        (6, 0o4000, 's', 'S'),
        (3, 0o2000, 's', 'S'),
        (0, 0o1000, 't', 'T'),
    ] {
        let bits = (mode >> shift) & 0o7;
        s.push(if bits & 0o4 != 0 { 'r' } else { '-' });
        s.push(if bits & 0o2 != 0 { 'w' } else { '-' });
        s.push(match (bits & 0o1 != 0, mode & special != 0) {
            (true, true) => set,
            (false, true) => unset,
            (true, false) => 'x',
            (false, false) => '-',
        });
    }
    s.push(' ');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_strings_match_ls() {
        for (mode, want) in [
            (0o100644, "-rw-r--r-- "),
            (0o040755, "drwxr-xr-x "),
            (0o120777, "lrwxrwxrwx "),
            (0o104755, "-rwsr-xr-x "),
            (0o102644, "-rw-r-Sr-- "),
            (0o041777, "drwxrwxrwt "),
            (0o041776, "drwxrwxrwT "),
            (0o010600, "prw------- "),
            (0o140700, "srwx------ "),
            (0o020620, "crw--w---- "),
            (0o060660, "brw-rw---- "),
        ] {
            assert_eq!(mode_string(mode), want, "mode {mode:o}");
        }
    }

    #[test]
    fn names_come_from_passwd_and_group_and_numbers_stay_numbers() {
        let names = Names::parse(
            "root:x:0:0:root:/root:/bin/bash\n# comment\ndev:x:1000:1000::/home/dev:/bin/sh\nbroken\n",
            "root:x:0:\ndev:x:1000:\nwheel:x:10:dev\n",
        );
        assert_eq!(names.user(0), "root");
        assert_eq!(names.user(1000), "dev");
        assert_eq!(names.user(4242), "4242");
        assert_eq!(names.group(10), "wheel");
        assert_eq!(names.group(77), "77");
        assert_eq!(names.home_of("dev"), Some(PathBuf::from("/home/dev")));
        assert_eq!(names.home_of_uid(0), Some(PathBuf::from("/root")));
        assert_eq!(names.home_of("nobody"), None);
    }

    #[test]
    fn ls_time_shows_the_year_only_for_old_or_future_files() {
        let now = 1_700_000_000;
        assert!(ls_time(now - 3600, now).contains(':'));
        let old = ls_time(now - 400 * 24 * 3600, now);
        assert!(!old.contains(':') && old.ends_with("2022"), "{old}");
    }

    #[test]
    fn times_before_1970_are_zero_on_the_wire() {
        assert_eq!(wire_time(-5), 0);
        assert_eq!(wire_time(1_700_000_000), 1_700_000_000);
        assert_eq!(wire_time(i64::MAX), u32::MAX);
    }
}
