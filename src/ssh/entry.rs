//! The OpenSSH client entry `devaipod ssh-config` writes for a pod, as text (pure): its
//! options, the quoting of the paths it names, the marker that lets `delete` tell our
//! files from the user's, whether `~/.ssh/config` includes `config.d`, and which toolbox
//! devaipod runs in. Only a validated [`Name`], devaipod's own paths, a validated user
//! name and a validated toolbox name reach the text; nothing from the repo does.

use std::path::{Component, Path, PathBuf};

use anyhow::{Result, bail};

use crate::names::Name;

/// The first line of every entry starts with this, then NAME and `;`.
const MARKER_PREFIX: &str = "# Written by devaipod ssh-config for workspace ";

/// The SSH user when the pod names no (valid) remoteUser: informational only, the
/// server runs sessions as the pod's remoteUser whatever the client sends.
pub(crate) const DEFAULT_USER: &str = "devaipod";

/// The line `~/.ssh/config` needs, at its top, for the entries to take effect.
pub(crate) const INCLUDE_LINE: &str = "Include config.d/*";

/// The file name of pod `name`'s entry in `~/.ssh/config.d`: `devaipod-NAME`.
pub(crate) fn file_name(name: &Name) -> String {
    super::keys::host_alias(name)
}

/// What one entry is made of.
#[derive(Debug, Clone)]
pub(crate) struct Entry<'a> {
    pub name: &'a Name,
    /// devaipod's own executable, absolute (the ProxyCommand runs it).
    pub exe: &'a Path,
    /// The pod's known_hosts pin ([`super::keys::PodKeys::known_hosts_path`]).
    pub known_hosts: &'a Path,
    /// The pod's remoteUser label, if any (validated here; an invalid one is not written).
    pub remote_user: Option<&'a str>,
    /// The toolbox devaipod runs in, if any: the host's ssh enters it to run devaipod.
    pub toolbox: Option<&'a Toolbox>,
}

/// The entry's text.
pub(crate) fn render(e: &Entry<'_>) -> Result<String> {
    let alias = super::keys::host_alias(e.name);
    let name = e.name.as_str();
    let exe = quoted(e.exe, "the devaipod executable")?;
    let known_hosts = quoted(e.known_hosts, "the known_hosts file")?;
    let user = ssh_user(e.remote_user);
    let mut out = format!("{MARKER_PREFIX}{name}; `devaipod delete {name}` removes it.\n");
    let proxy = match e.toolbox {
        None => format!("{exe} ssh-server {name}"),
        Some(tb) => {
            out.push_str(&format!(
                "# devaipod runs in toolbox {tb}: the host's ssh enters it. A flatpak editor needs `flatpak-spawn --host ` before `toolbox` below.\n",
                tb = tb.as_str()
            ));
            format!(
                "toolbox run --container {} {exe} ssh-server {name}",
                tb.as_str()
            )
        }
    };
    let options = [
        ("Host", alias.clone()),
        ("HostName", alias.clone()),
        ("User", user.to_string()),
        ("ProxyCommand", proxy),
        ("HostKeyAlias", alias),
        ("UserKnownHostsFile", known_hosts),
        ("GlobalKnownHostsFile", "/dev/null".into()),
        ("StrictHostKeyChecking", "yes".into()),
        ("UpdateHostKeys", "no".into()),
        ("CheckHostIP", "no".into()),
        ("ForwardAgent", "no".into()),
        ("ForwardX11", "no".into()),
    ];
    for (i, (key, value)) in options.iter().enumerate() {
        let indent = if i == 0 { "" } else { "    " };
        out.push_str(&format!("{indent}{key} {value}\n"));
    }
    Ok(out)
}

/// Whether `first_line` is the marker of pod `name`'s entry (so the file is ours).
pub(crate) fn is_marker(first_line: &str, name: &Name) -> bool {
    first_line
        .strip_prefix(MARKER_PREFIX)
        .and_then(|rest| rest.strip_prefix(name.as_str()))
        .is_some_and(|rest| rest.starts_with(';'))
}

/// `path` in double quotes for an OpenSSH config line, `%` written `%%` (ssh expands
/// `%` tokens in ProxyCommand and UserKnownHostsFile). The ProxyCommand is also read by
/// the user's shell, and UserKnownHostsFile expands `${VAR}`: characters that would mean
/// something to ssh's quoting or a shell inside double quotes are refused, not escaped.
pub(crate) fn quoted(path: &Path, what: &str) -> Result<String> {
    let Some(s) = path.to_str() else {
        bail!(
            "{what} {} is not UTF-8, which an OpenSSH config cannot name: use a path without such bytes",
            path.display()
        );
    };
    if !path.is_absolute() {
        bail!("{what} {s:?} is not an absolute path");
    }
    if let Some(c) = s.chars().find(|&c| refused_in_path(c)) {
        bail!(
            "{what} {s:?} contains {}, which devaipod does not write into an OpenSSH config (ssh or the shell running ProxyCommand would read it differently): use a path without it",
            describe(c)
        );
    }
    Ok(format!("\"{}\"", s.replace('%', "%%")))
}

fn refused_in_path(c: char) -> bool {
    matches!(c, '"' | '\\' | '$' | '`') || c.is_control()
}

fn describe(c: char) -> String {
    match c {
        '"' => "a double quote".into(),
        '\\' => "a backslash".into(),
        '$' => "a dollar sign".into(),
        '`' => "a backquote".into(),
        '\n' => "a newline".into(),
        c => format!("the control character U+{:04X}", u32::from(c)),
    }
}

/// The entry's `User`: the pod's remoteUser when it is a plain POSIX user name
/// (`[a-z_][a-z0-9_.-]*`, at most 32 characters) or a numeric uid, else [`DEFAULT_USER`].
pub(crate) fn ssh_user(remote_user: Option<&str>) -> &str {
    match remote_user {
        Some(u) if is_plain_user(u) => u,
        _ => DEFAULT_USER,
    }
}

fn is_plain_user(u: &str) -> bool {
    let numeric = !u.is_empty() && u.len() <= 10 && u.bytes().all(|b| b.is_ascii_digit());
    let mut chars = u.chars();
    let named = u.len() <= 32
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-'));
    numeric || named
}

/// The name of the toolbox container devaipod runs in (validated: it reaches the
/// ProxyCommand unquoted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Toolbox(String);

impl Toolbox {
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// The toolbox devaipod runs in: `None` without `/run/.toolboxenv` (`in_toolbox`), else
/// the `name="..."` line of `/run/.containerenv` (its text, `containerenv`).
pub(crate) fn toolbox(in_toolbox: bool, containerenv: Option<&str>) -> Result<Option<Toolbox>> {
    if !in_toolbox {
        return Ok(None);
    }
    let name = containerenv.and_then(|text| {
        text.lines().find_map(|l| {
            l.trim()
                .strip_prefix("name=")
                .map(|v| v.trim().trim_matches('"').to_string())
        })
    });
    let Some(name) = name else {
        bail!(
            "devaipod runs in a toolbox (/run/.toolboxenv exists) but /run/.containerenv names no container (no name=\"...\" line), so the entry cannot say which toolbox to enter: run devaipod on the host, or write the entry with --stdout and put `toolbox run --container NAME` before the ProxyCommand yourself"
        );
    };
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && name.len() <= 253;
    if !valid {
        bail!(
            "the toolbox's name in /run/.containerenv ({:?}) is not a container name ([A-Za-z0-9][A-Za-z0-9_.-]*), so devaipod does not write it into an OpenSSH config",
            crate::terminal::line(&name)
        );
    }
    Ok(Some(Toolbox(name)))
}

/// Whether `~/.ssh/config` makes OpenSSH read the entry file `file_name` in `config.d`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Inclusion {
    /// An `Include` before any `Host`/`Match` block reads it.
    Included,
    /// Only an `Include` inside a `Host`/`Match` block (from 1-based `line`) reads it:
    /// conditional, and after options that would win over the entry's.
    InsideBlock { line: usize },
    /// Nothing includes it.
    Missing,
}

/// How `config` (the text of `~/.ssh/config` in `home`) treats `config.d/FILE_NAME`.
/// OpenSSH's rules: keywords are case-insensitive and may be followed by `=`, arguments
/// may be quoted, relative Include paths are under `~/.ssh`, `~` is the home folder, and
/// Include takes globs.
pub(crate) fn inclusion(config: &str, home: &Path, file_name: &str) -> Inclusion {
    let want = home.join(".ssh/config.d").join(file_name);
    let mut in_block = false;
    for (i, raw) in config.lines().enumerate() {
        let (keyword, rest) = split_keyword(raw);
        if keyword.eq_ignore_ascii_case("host") || keyword.eq_ignore_ascii_case("match") {
            in_block = true;
            continue;
        }
        if !keyword.eq_ignore_ascii_case("include") {
            continue;
        }
        let Some(args) = split_args(rest) else {
            continue;
        };
        let reads = args
            .iter()
            .any(|a| glob_path_matches(&resolve_include(a, home), &want));
        match (reads, in_block) {
            (true, false) => return Inclusion::Included,
            (true, true) => return Inclusion::InsideBlock { line: i + 1 },
            (false, _) => {}
        }
    }
    Inclusion::Missing
}

/// A config line's keyword and the rest: `Key value`, `Key=value`, `Key = value`.
fn split_keyword(line: &str) -> (&str, &str) {
    let line = line.trim_start();
    if line.starts_with('#') {
        return ("", "");
    }
    let end = line
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(line.len());
    let (keyword, rest) = line.split_at(end);
    let rest = rest.trim_start();
    let rest = rest.strip_prefix('=').unwrap_or(rest).trim_start();
    (keyword, rest)
}

/// OpenSSH's argument splitting: single and double quotes, backslash escapes of quotes,
/// backslashes and (outside quotes) spaces, `#` at an argument's start ends the line.
/// `None` for an unbalanced quote (ssh refuses the line).
fn split_args(s: &str) -> Option<Vec<String>> {
    let mut args = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| *c == ' ' || *c == '\t').is_some() {}
        match chars.peek() {
            None | Some('#') => return Some(args),
            Some(_) => {}
        }
        let mut arg = String::new();
        let mut quote = None;
        while let Some(c) = chars.next() {
            match (c, quote) {
                ('\\', q) => match chars.peek() {
                    Some(&n) if n == '\'' || n == '"' || n == '\\' || (q.is_none() && n == ' ') => {
                        arg.push(n);
                        chars.next();
                    }
                    _ => arg.push('\\'),
                },
                (' ' | '\t', None) => break,
                ('"' | '\'', None) => quote = Some(c),
                (c, Some(q)) if c == q => quote = None,
                (c, _) => arg.push(c),
            }
        }
        if quote.is_some() {
            return None;
        }
        args.push(arg);
    }
}

/// An Include argument as a path: `~` is `home`, a relative path is under `~/.ssh`.
fn resolve_include(arg: &str, home: &Path) -> PathBuf {
    if arg == "~" {
        home.to_path_buf()
    } else if let Some(rest) = arg.strip_prefix("~/") {
        home.join(rest)
    } else if arg.starts_with('/') {
        PathBuf::from(arg)
    } else {
        home.join(".ssh").join(arg)
    }
}

/// Whether glob `pattern` (a path whose components may hold `*` and `?`) names `path`.
fn glob_path_matches(pattern: &Path, path: &Path) -> bool {
    let parts = |p: &Path| -> Vec<String> {
        p.components()
            .filter(|c| !matches!(c, Component::CurDir))
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect()
    };
    let (pattern, path) = (parts(pattern), parts(path));
    pattern.len() == path.len()
        && pattern
            .iter()
            .zip(&path)
            .all(|(p, s)| glob_matches(p.as_bytes(), s.as_bytes()))
}

/// Shell-style `*` and `?` over one path component.
fn glob_matches(pattern: &[u8], s: &[u8]) -> bool {
    match pattern.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|i| glob_matches(rest, &s[i..])),
        Some((b'?', rest)) => !s.is_empty() && glob_matches(rest, &s[1..]),
        Some((c, rest)) => s.first() == Some(c) && glob_matches(rest, &s[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo() -> Name {
        Name::new("demo").expect("name")
    }

    fn entry<'a>(name: &'a Name, exe: &'a Path, kh: &'a Path) -> Entry<'a> {
        Entry {
            name,
            exe,
            known_hosts: kh,
            remote_user: Some("dev"),
            toolbox: None,
        }
    }

    #[test]
    fn the_entry_names_our_paths_and_pins_the_host_key() {
        let name = demo();
        let text = render(&entry(
            &name,
            Path::new("/usr/local/bin/devaipod"),
            Path::new("/home/u/.local/share/devaipod/ssh/demo/known_hosts"),
        ))
        .expect("rendered");
        assert_eq!(
            text,
            "# Written by devaipod ssh-config for workspace demo; `devaipod delete demo` removes it.
Host devaipod-demo
    HostName devaipod-demo
    User dev
    ProxyCommand \"/usr/local/bin/devaipod\" ssh-server demo
    HostKeyAlias devaipod-demo
    UserKnownHostsFile \"/home/u/.local/share/devaipod/ssh/demo/known_hosts\"
    GlobalKnownHostsFile /dev/null
    StrictHostKeyChecking yes
    UpdateHostKeys no
    CheckHostIP no
    ForwardAgent no
    ForwardX11 no
"
        );
        assert!(is_marker(text.lines().next().expect("line"), &name));
    }

    #[test]
    fn in_a_toolbox_the_proxy_command_enters_it_and_flatpak_is_explained() {
        let name = demo();
        let tb = toolbox(
            true,
            Some("engine=\"podman-4.3.1\"\nname=\"fedora-toolbox-40\"\n"),
        )
        .expect("parsed")
        .expect("a toolbox");
        let mut e = entry(
            &name,
            Path::new("/usr/bin/devaipod"),
            Path::new("/var/home/u/.local/share/devaipod/ssh/demo/known_hosts"),
        );
        e.toolbox = Some(&tb);
        let text = render(&e).expect("rendered");
        let lines: Vec<&str> = text.lines().collect();
        assert!(is_marker(lines[0], &name), "{text}");
        assert_eq!(
            lines[1],
            "# devaipod runs in toolbox fedora-toolbox-40: the host's ssh enters it. A flatpak editor needs `flatpak-spawn --host ` before `toolbox` below."
        );
        assert!(
            lines.contains(
                &"    ProxyCommand toolbox run --container fedora-toolbox-40 \"/usr/bin/devaipod\" ssh-server demo"
            ),
            "{text}"
        );
    }

    #[test]
    fn toolbox_detection_reads_containerenv_only_inside_a_toolbox() {
        assert_eq!(toolbox(false, Some("name=\"x\"")).expect("ok"), None);
        assert_eq!(
            toolbox(true, Some("id=\"abc\"\nname=\"tb_1.a-b\"\n"))
                .expect("ok")
                .map(|t| t.as_str().to_string()),
            Some("tb_1.a-b".into())
        );
        for bad in [None, Some(""), Some("id=\"abc\"\n")] {
            let e = toolbox(true, bad).expect_err("no name");
            assert!(format!("{e}").contains("names no container"), "{e}");
        }
        for hostile in [
            "name=\"a b\"",
            "name=\"x; rm -rf ~\"",
            "name=\"\"",
            "name=\"-x\"",
            "name=\"x\u{1b}[2J\"",
        ] {
            let e = toolbox(true, Some(hostile)).expect_err(hostile);
            assert!(format!("{e}").contains("not a container name"), "{e}");
            assert!(!format!("{e}").contains('\u{1b}'), "{e}");
        }
    }

    #[test]
    fn paths_are_quoted_percent_escaped_and_dangerous_ones_refused() {
        assert_eq!(
            quoted(Path::new("/home/a b/%h/x"), "p").expect("ok"),
            "\"/home/a b/%%h/x\""
        );
        assert_eq!(
            quoted(Path::new("/h/it's #1"), "p").expect("ok"),
            "\"/h/it's #1\""
        );
        for (bad, why) in [
            ("/a\"b", "a double quote"),
            ("/a\\b", "a backslash"),
            ("/a$b", "a dollar sign"),
            ("/a${HOME}", "a dollar sign"),
            ("/a`id`", "a backquote"),
            ("/a\nHost *", "a newline"),
            ("/a\tb", "U+0009"),
            ("/a\u{7f}", "U+007F"),
            ("/a\u{9b}", "U+009B"),
        ] {
            let e = quoted(Path::new(bad), "the thing").expect_err(bad);
            let msg = format!("{e}");
            assert!(msg.contains(why), "{bad}: {msg}");
            assert!(msg.starts_with("the thing "), "{msg}");
        }
        assert!(quoted(Path::new("relative/devaipod"), "p").is_err());
        use std::os::unix::ffi::OsStrExt as _;
        let not_utf8 = std::ffi::OsStr::from_bytes(b"/a\xffb");
        assert!(quoted(Path::new(not_utf8), "p").is_err());
    }

    #[test]
    fn a_bad_path_fails_the_whole_entry() {
        let name = demo();
        let e = entry(&name, Path::new("/x/dev\"aipod"), Path::new("/kh"));
        assert!(render(&e).is_err());
        let e = entry(&name, Path::new("/x/devaipod"), Path::new("/k\nh"));
        assert!(render(&e).is_err());
    }

    #[test]
    fn only_plain_user_names_reach_the_entry() {
        for ok in ["dev", "_x", "node", "a.b-c_1", "1000", "0", &"a".repeat(32)] {
            assert_eq!(ssh_user(Some(ok)), ok);
        }
        for bad in [
            "",
            "Dev",
            "1dev",
            "-x",
            "a b",
            "dev\nHost *",
            "x\"y",
            "%h",
            "root@host",
            &"a".repeat(33),
            "12345678901",
        ] {
            assert_eq!(ssh_user(Some(bad)), DEFAULT_USER, "{bad:?}");
        }
        assert_eq!(ssh_user(None), DEFAULT_USER);
        let name = demo();
        let mut e = entry(&name, Path::new("/d"), Path::new("/k"));
        e.remote_user = Some("x\nProxyCommand evil");
        let text = render(&e).expect("rendered");
        assert!(text.contains("\n    User devaipod\n"), "{text}");
        assert!(!text.contains("evil"), "{text}");
    }

    #[test]
    fn the_marker_is_per_workspace() {
        let name = demo();
        let line = "# Written by devaipod ssh-config for workspace demo; `devaipod delete demo` removes it.";
        assert!(is_marker(line, &name));
        assert!(!is_marker(line, &Name::new("dem").expect("name")));
        assert!(!is_marker(
            "# Written by devaipod ssh-config for workspace demo2; x",
            &name
        ));
        assert!(!is_marker("Host devaipod-demo", &name));
        assert!(!is_marker("", &name));
    }

    #[test]
    fn include_lines_are_read_as_openssh_reads_them() {
        let home = Path::new("/home/u");
        let f = "devaipod-demo";
        let included = [
            "Include config.d/*",
            "include config.d/*\n",
            "INCLUDE=config.d/*",
            "Include = config.d/*",
            "  Include\t\"config.d/*\"",
            "Include 'config.d/devaipod-*'",
            "Include ~/.ssh/config.d/*",
            "Include /home/u/.ssh/config.d/*",
            "Include \"/home/u/.ssh/config.d/*\" # ours",
            "Include ~/.ssh/other/* config.d/*",
            "Include ./config.d/*",
            "Include config.d/devaipod-demo",
            "Include config.d/devaipod-????",
            "# a comment\nUser me\nInclude config.d/*\nHost x\n",
            "Include ~/.ssh/*/*",
        ];
        for c in included {
            assert_eq!(inclusion(c, home, f), Inclusion::Included, "{c:?}");
        }
        let missing = [
            "",
            "# Include config.d/*",
            "Include config.d/*.conf",
            "Include config.d",
            "Include other.d/*",
            "Include /home/v/.ssh/config.d/*",
            "Include ~/config.d/*",
            "Include \"config.d/*",
            "Include # config.d/*",
            "IncludeX config.d/*",
            "Include config.d/devaipod-other",
        ];
        for c in missing {
            assert_eq!(inclusion(c, home, f), Inclusion::Missing, "{c:?}");
        }
        assert_eq!(
            inclusion(
                "Host github.com\n  User git\n  Include config.d/*\n",
                home,
                f
            ),
            Inclusion::InsideBlock { line: 3 }
        );
        assert_eq!(
            inclusion("Match all\nInclude config.d/*\n", home, f),
            Inclusion::InsideBlock { line: 2 }
        );
    }

    #[test]
    fn argument_splitting_follows_openssh() {
        let s = |x: &str| split_args(x).map(|v| v.join("|"));
        assert_eq!(s("a b\tc"), Some("a|b|c".into()));
        assert_eq!(s("\"a b\" 'c d'"), Some("a b|c d".into()));
        assert_eq!(s("a\\ b"), Some("a b".into()));
        assert_eq!(s("\"a\\\"b\""), Some("a\"b".into()));
        assert_eq!(s("a\\xb"), Some("a\\xb".into()));
        assert_eq!(s("a #b"), Some("a".into()));
        assert_eq!(s("a#b"), Some("a#b".into()));
        assert_eq!(s("'a"), None);
    }
}
