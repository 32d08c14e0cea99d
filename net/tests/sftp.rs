//! `devaipod-net sftp-server` against the real OpenSSH clients (openssh-client: Debian
//! 12's `sftp` and `scp`, which speaks SFTP), without a network or an sshd: `sftp -D`
//! runs a server program directly on its stdio, and `scp -S` takes the program it
//! would run as ssh, here a script that runs the server. The server's current directory
//! is the test's "remote" directory, as the workspaceFolder is in a pod.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};

const BIN: &str = env!("CARGO_BIN_EXE_devaipod-net");

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "devaipod-net-sftp-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(path.join("local")).expect("creating a temporary directory");
        fs::create_dir_all(path.join("remote")).expect("creating a temporary directory");
        TempDir(fs::canonicalize(&path).expect("canonical path"))
    }

    fn local(&self, name: &str) -> PathBuf {
        self.0.join("local").join(name)
    }

    fn remote(&self, name: &str) -> PathBuf {
        self.0.join("remote").join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[track_caller]
fn run_client(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| {
        panic!("cannot run {cmd:?}: {e}: the tests need OpenSSH's clients (apt-get install openssh-client)")
    })
}

/// `sftp -b` with the server as its direct peer, in the remote directory.
#[track_caller]
fn sftp_batch(dir: &TempDir, batch: &str) -> Output {
    let file = dir.0.join("batch");
    fs::write(&file, batch).expect("writing the batch file");
    run_client(
        Command::new("sftp")
            .arg("-b")
            .arg(&file)
            .arg("-D")
            .arg(format!("{BIN} sftp-server"))
            .current_dir(dir.0.join("remote")),
    )
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// This process's umask, which the server (its child) inherits.
fn umask() -> u32 {
    let status = fs::read_to_string("/proc/self/status").expect("reading /proc/self/status");
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .expect("a Umask line in /proc/self/status");
    u32::from_str_radix(line.trim(), 8).expect("an octal umask")
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

#[test]
fn sftp_puts_gets_lists_renames_links_and_changes_modes() {
    let dir = TempDir::new("batch");
    fs::write(dir.local("hello.txt"), "hello\n").expect("write");
    fs::set_permissions(dir.local("hello.txt"), fs::Permissions::from_mode(0o640)).expect("chmod");
    fs::write(dir.local("exec.sh"), "#!/bin/sh\n").expect("write");
    fs::set_permissions(dir.local("exec.sh"), fs::Permissions::from_mode(0o755)).expect("chmod");
    // Bigger than a read or write, so the client pipelines many at offsets.
    let big = pattern(3_000_001);
    fs::write(dir.local("big.bin"), &big).expect("write");

    let out = sftp_batch(
        &dir,
        &format!(
            "pwd
lcd {local}
put hello.txt
put -p exec.sh
mkdir sub
put big.bin sub/big.bin
rename hello.txt sub/hello.txt
chmod 600 sub/hello.txt
symlink sub/hello.txt link.txt
ln sub/big.bin hard.bin
get link.txt via-link.txt
get sub/big.bin big-back.bin
ls -l sub
rm hard.bin
mkdir gone
rmdir gone
df
",
            local = dir.0.join("local").display()
        ),
    );
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "sftp failed: {stdout}{}",
        text(&out.stderr)
    );
    let remote = dir.0.join("remote");
    assert!(
        stdout.contains(&format!("Remote working directory: {}\n", remote.display())),
        "{stdout}"
    );

    assert_eq!(
        fs::read_to_string(dir.remote("sub/hello.txt")).expect("renamed"),
        "hello\n"
    );
    assert!(!dir.remote("hello.txt").exists());
    assert_eq!(mode(&dir.remote("sub/hello.txt")), 0o600);
    // put -p: the mode and the modification time come along.
    assert_eq!(mode(&dir.remote("exec.sh")), 0o755);
    assert_eq!(
        fs::metadata(dir.remote("exec.sh")).expect("stat").mtime(),
        fs::metadata(dir.local("exec.sh")).expect("stat").mtime()
    );
    assert!(fs::read(dir.remote("sub/big.bin")).expect("uploaded") == big);
    assert!(fs::read(dir.local("big-back.bin")).expect("downloaded") == big);
    assert_eq!(
        fs::read_to_string(dir.local("via-link.txt")).expect("through the link"),
        "hello\n"
    );
    assert_eq!(
        fs::read_link(dir.remote("link.txt")).expect("a symlink"),
        Path::new("sub/hello.txt")
    );
    assert!(!dir.remote("hard.bin").exists());
    assert!(!dir.remote("gone").exists());
    // Made by the server: the calling user's, as the test's own directory is.
    let me = fs::metadata(&remote).expect("stat").uid();
    for f in ["exec.sh", "sub", "sub/big.bin", "sub/hello.txt"] {
        assert_eq!(fs::metadata(dir.remote(f)).expect("stat").uid(), me, "{f}");
    }

    let listed = stdout
        .lines()
        .find(|l| !l.starts_with("sftp>") && l.ends_with(" hello.txt"))
        .unwrap_or_else(|| panic!("ls -l lists hello.txt: {stdout}"));
    assert!(listed.starts_with("-rw------- "), "{listed}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("-rw-r--r--") && l.ends_with(" big.bin")),
        "{stdout}"
    );
    assert!(stdout.contains("%Capacity"), "df: {stdout}");
}

#[test]
fn sftp_reports_a_missing_file_and_a_refused_directory() {
    let dir = TempDir::new("errors");
    fs::create_dir(dir.remote("full")).expect("mkdir");
    fs::write(dir.remote("full/x"), "x").expect("write");
    let out = sftp_batch(&dir, "get missing.txt\n");
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("missing.txt") && err.contains("not found"),
        "{err}"
    );

    let out = sftp_batch(&dir, "rmdir full\n");
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("Failure"), "{err}");
    assert!(dir.remote("full/x").exists());
}

#[test]
fn scp_copies_files_and_trees_in_and_out() {
    let dir = TempDir::new("scp");
    let ssh = dir.0.join("fake-ssh");
    // What scp runs as ssh: `fake-ssh ... -s -- HOST sftp`; the server, whatever the args.
    fs::write(&ssh, format!("#!/bin/sh\nexec '{BIN}' sftp-server\n")).expect("write");
    fs::set_permissions(&ssh, fs::Permissions::from_mode(0o755)).expect("chmod");
    fs::write(dir.local("one.txt"), "one\n").expect("write");
    fs::set_permissions(dir.local("one.txt"), fs::Permissions::from_mode(0o640)).expect("chmod");
    fs::create_dir_all(dir.local("tree/a/b")).expect("mkdir");
    fs::write(dir.local("tree/top"), "top\n").expect("write");
    let deep = pattern(400_000);
    fs::write(dir.local("tree/a/b/deep"), &deep).expect("write");

    let scp = |args: &[&str]| {
        let out = run_client(
            Command::new("scp")
                .arg("-S")
                .arg(&ssh)
                .args(args)
                .current_dir(dir.0.join("remote")),
        );
        assert!(
            out.status.success(),
            "scp {args:?} failed: {}",
            text(&out.stderr)
        );
    };
    let local = |name: &str| dir.local(name).to_str().expect("utf-8").to_string();
    scp(&[&local("one.txt"), "pod:copied.txt"]);
    scp(&["-r", &local("tree"), "pod:"]);
    scp(&["-r", "pod:tree", &local("tree-back")]);
    scp(&["pod:copied.txt", &local("one-back.txt")]);

    assert_eq!(
        fs::read_to_string(dir.remote("copied.txt")).expect("copied"),
        "one\n"
    );
    // scp sends the source's mode with the open, and the umask applies.
    assert_eq!(mode(&dir.remote("copied.txt")), 0o640 & !umask());
    assert!(fs::read(dir.remote("tree/a/b/deep")).expect("in the tree") == deep);
    assert_eq!(
        fs::read_to_string(dir.remote("tree/top")).expect("top"),
        "top\n"
    );
    assert!(fs::read(dir.local("tree-back/a/b/deep")).expect("back out") == deep);
    assert_eq!(
        fs::read_to_string(dir.local("one-back.txt")).expect("back out"),
        "one\n"
    );
}
