//! The SFTP server's file system side, called as russh-sftp calls it. The real OpenSSH
//! client against the built binary is tests/sftp.rs.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::sync::atomic::{AtomicU64, Ordering};

use super::*;

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
        fs::create_dir_all(&path).expect("creating a temporary directory");
        TempDir(fs::canonicalize(&path).expect("canonical temporary directory"))
    }

    fn join(&self, name: &str) -> String {
        self.0.join(name).to_str().expect("utf-8 path").to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn server() -> Server {
    Server::new(None)
}

#[track_caller]
fn code(r: Result<impl std::fmt::Debug, StatusReply>) -> StatusCode {
    match r {
        Ok(v) => panic!("expected an error status, got {v:?}"),
        Err(e) => e.status_code,
    }
}

fn flags(f: &[OpenFlags]) -> OpenFlags {
    f.iter().fold(OpenFlags::empty(), |a, b| a | *b)
}

fn with_mode(mode: u32) -> FileAttributes {
    FileAttributes {
        permissions: Some(mode),
        ..FileAttributes::empty()
    }
}

async fn open(s: &mut Server, path: &str, f: &[OpenFlags]) -> Result<String, StatusReply> {
    s.open(1, path.into(), flags(f), FileAttributes::empty())
        .await
        .map(|h| h.handle)
}

#[test]
fn errno_maps_to_the_status_openssh_sends_with_the_words_only() {
    for (errno, want) in [
        (libc::ENOENT, StatusCode::NoSuchFile),
        (libc::ENOTDIR, StatusCode::NoSuchFile),
        (libc::ELOOP, StatusCode::NoSuchFile),
        (libc::EACCES, StatusCode::PermissionDenied),
        (libc::EPERM, StatusCode::PermissionDenied),
        (libc::EINVAL, StatusCode::BadMessage),
        (libc::ENOSYS, StatusCode::OpUnsupported),
        (libc::EEXIST, StatusCode::Failure),
        (libc::ENOTEMPTY, StatusCode::Failure),
    ] {
        let s = status_of(&io::Error::from_raw_os_error(errno));
        assert_eq!(s.status_code, want, "errno {errno}");
        let msg = s.error_message.expect("a message");
        assert!(!msg.contains("os error"), "{msg}");
    }
    let s = status_of(&io::Error::from_raw_os_error(libc::EACCES));
    assert_eq!(s.error_message.as_deref(), Some("Permission denied"));
}

#[tokio::test]
async fn version_3_with_the_openssh_extensions_it_implements() {
    let v = server().init(3, HashMap::new()).await.expect("init");
    assert_eq!(v.version, 3);
    for ext in [
        "posix-rename@openssh.com",
        "statvfs@openssh.com",
        "fstatvfs@openssh.com",
        "hardlink@openssh.com",
        "fsync@openssh.com",
        "limits@openssh.com",
        "expand-path@openssh.com",
    ] {
        assert!(v.extensions.contains_key(ext), "{ext} missing: {v:?}");
    }
}

#[tokio::test]
async fn realpath_is_absolute_from_the_current_directory_and_allows_a_new_last_name() {
    let mut s = server();
    let cwd = fs::canonicalize(".").expect("cwd");
    for dot in [".", ""] {
        let n = s.realpath(1, dot.into()).await.expect("realpath .");
        assert_eq!(n.files.len(), 1);
        assert_eq!(Path::new(&n.files[0].filename), cwd);
    }
    let dir = TempDir::new("realpath");
    fs::create_dir(dir.0.join("sub")).expect("mkdir");
    let n = s
        .realpath(1, dir.join("sub/../sub/./new.txt"))
        .await
        .expect("realpath of a name to create");
    assert_eq!(Path::new(&n.files[0].filename), dir.0.join("sub/new.txt"));
    let e = s.realpath(1, dir.join("missing/new.txt")).await;
    assert_eq!(code(e), StatusCode::NoSuchFile);
}

#[tokio::test]
async fn open_follows_the_flags_and_creates_with_the_mode_asked() {
    let dir = TempDir::new("open");
    let mut s = server();
    let path = dir.join("f.txt");
    let e = open(&mut s, &path, &[OpenFlags::READ]).await;
    assert_eq!(code(e), StatusCode::NoSuchFile);

    let h = s
        .open(
            1,
            path.clone(),
            flags(&[OpenFlags::WRITE, OpenFlags::CREATE, OpenFlags::EXCLUDE]),
            with_mode(0o600),
        )
        .await
        .expect("create")
        .handle;
    assert_eq!(
        fs::metadata(&path).expect("stat").permissions().mode() & 0o777,
        0o600
    );
    s.write(1, h.clone(), 0, b"hello world".to_vec())
        .await
        .expect("write");
    s.write(1, h.clone(), 6, b"WORLD".to_vec())
        .await
        .expect("write at an offset");
    s.close(1, h.clone()).await.expect("close");
    assert_eq!(fs::read_to_string(&path).expect("read"), "hello WORLD");
    assert!(code(s.close(1, h).await) == StatusCode::Failure);

    let e = open(
        &mut s,
        &path,
        &[OpenFlags::WRITE, OpenFlags::CREATE, OpenFlags::EXCLUDE],
    )
    .await;
    assert_eq!(code(e), StatusCode::Failure, "O_EXCL on an existing file");

    // Append ignores the offset; truncate empties.
    let h = open(&mut s, &path, &[OpenFlags::WRITE, OpenFlags::APPEND])
        .await
        .expect("append");
    s.write(1, h.clone(), 0, b"!".to_vec())
        .await
        .expect("write");
    s.close(1, h).await.expect("close");
    assert_eq!(fs::read_to_string(&path).expect("read"), "hello WORLD!");
    let h = open(&mut s, &path, &[OpenFlags::WRITE, OpenFlags::TRUNCATE])
        .await
        .expect("truncate");
    s.close(1, h).await.expect("close");
    assert_eq!(fs::metadata(&path).expect("stat").len(), 0);
}

#[tokio::test]
async fn reads_at_offsets_end_with_eof_and_refuse_directory_handles() {
    let dir = TempDir::new("read");
    let path = dir.join("data");
    let content: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    fs::write(&path, &content).expect("write");
    let mut s = server();
    let h = open(&mut s, &path, &[OpenFlags::READ]).await.expect("open");
    let d = s.read(1, h.clone(), 10, 5).await.expect("read");
    assert_eq!(d.data, &content[10..15]);
    // A read longer than the limit is cut to it, never past the file's end.
    let d = s.read(1, h.clone(), 0, u32::MAX).await.expect("long read");
    assert_eq!(d.data.len(), MAX_READ as usize);
    let d = s
        .read(1, h.clone(), 299_990, 100)
        .await
        .expect("read the tail");
    assert_eq!(d.data, &content[299_990..]);
    assert_eq!(
        code(s.read(1, h.clone(), 300_000, 100).await),
        StatusCode::Eof
    );
    let a = s.fstat(1, h.clone()).await.expect("fstat");
    assert_eq!(a.attrs.size, Some(300_000));

    let dh = s.opendir(1, dir.join("")).await.expect("opendir").handle;
    assert_eq!(code(s.read(1, dh, 0, 10).await), StatusCode::Failure);
    assert_eq!(
        code(s.read(1, "nope".into(), 0, 10).await),
        StatusCode::Failure
    );
}

#[tokio::test]
async fn handles_are_bounded_and_the_refused_open_creates_nothing() {
    let dir = TempDir::new("handles");
    let mut s = server();
    s.max_handles = 3;
    let mut handles = Vec::new();
    for i in 0..3 {
        let p = dir.join(&format!("f{i}"));
        handles.push(
            open(&mut s, &p, &[OpenFlags::WRITE, OpenFlags::CREATE])
                .await
                .expect("open under the limit"),
        );
    }
    let over = dir.join("over");
    let e = open(&mut s, &over, &[OpenFlags::WRITE, OpenFlags::CREATE])
        .await
        .expect_err("a fourth handle");
    assert_eq!(e.status_code, StatusCode::Failure);
    assert!(
        e.error_message
            .as_deref()
            .is_some_and(|m| m.contains("too many open")),
        "{e:?}"
    );
    assert!(!Path::new(&over).exists());
    assert_eq!(code(s.opendir(1, dir.join("")).await), StatusCode::Failure);
    s.close(1, handles.remove(0)).await.expect("close");
    open(&mut s, &over, &[OpenFlags::WRITE, OpenFlags::CREATE])
        .await
        .expect("an open after a close");
}

#[tokio::test]
async fn readdir_sends_dots_then_batches_then_eof() {
    let dir = TempDir::new("readdir");
    for i in 0..250 {
        fs::write(dir.0.join(format!("file-{i:03}")), b"x").expect("write");
    }
    fs::create_dir(dir.0.join("subdir")).expect("mkdir");
    let mut s = server();
    let h = s.opendir(1, dir.join("")).await.expect("opendir").handle;
    let mut names = Vec::new();
    let mut batches = 0;
    loop {
        match s.readdir(1, h.clone()).await {
            Ok(n) => {
                assert!(n.files.len() <= DIR_BATCH);
                batches += 1;
                names.extend(n.files);
            }
            Err(e) => {
                assert_eq!(e.status_code, StatusCode::Eof);
                break;
            }
        }
    }
    assert_eq!(batches, 3);
    assert_eq!(names.len(), 253);
    assert_eq!(names[0].filename, ".");
    assert_eq!(names[1].filename, "..");
    let sub = names
        .iter()
        .find(|f| f.filename == "subdir")
        .expect("subdir listed");
    assert!(sub.attrs.is_dir());
    assert!(
        sub.longname.starts_with('d') && sub.longname.ends_with(" subdir"),
        "{}",
        sub.longname
    );
    let f = names
        .iter()
        .find(|f| f.filename == "file-007")
        .expect("file listed");
    assert_eq!(f.attrs.size, Some(1));
    assert!(f.longname.starts_with("-rw"), "{}", f.longname);
    s.close(1, h).await.expect("close");
}

#[tokio::test]
async fn legacy_rename_refuses_an_existing_target_and_posix_rename_replaces_it() {
    let dir = TempDir::new("rename");
    let (a, b, c) = (dir.join("a"), dir.join("b"), dir.join("c"));
    fs::write(&a, "A").expect("write");
    fs::write(&b, "B").expect("write");
    let mut s = server();
    let e = s.rename(1, a.clone(), b.clone()).await;
    assert_eq!(code(e), StatusCode::Failure);
    assert_eq!(fs::read_to_string(&a).expect("a stays"), "A");
    assert_eq!(fs::read_to_string(&b).expect("b stays"), "B");
    s.rename(1, a.clone(), c.clone()).await.expect("rename");
    assert!(!Path::new(&a).exists());
    assert_eq!(fs::read_to_string(&c).expect("c"), "A");

    let mut data = Vec::new();
    for p in [&c, &b] {
        data.extend((p.len() as u32).to_be_bytes());
        data.extend(p.as_bytes());
    }
    s.extended(1, "posix-rename@openssh.com".into(), data)
        .await
        .expect("posix-rename");
    assert!(!Path::new(&c).exists());
    assert_eq!(fs::read_to_string(&b).expect("b replaced"), "A");
}

#[tokio::test]
async fn symlink_takes_openssh_order_target_first() {
    let dir = TempDir::new("symlink");
    fs::write(dir.0.join("target.txt"), "T").expect("write");
    let mut s = server();
    let link = dir.join("link");
    s.symlink(1, "target.txt".into(), link.clone())
        .await
        .expect("symlink");
    assert_eq!(
        fs::read_link(&link).expect("a link"),
        Path::new("target.txt")
    );
    let n = s.readlink(1, link.clone()).await.expect("readlink");
    assert_eq!(n.files[0].filename, "target.txt");
    let l = s.lstat(1, link.clone()).await.expect("lstat");
    assert!(l.attrs.is_symlink());
    let t = s.stat(1, link).await.expect("stat");
    assert!(t.attrs.is_regular() && t.attrs.size == Some(1));
}

#[tokio::test]
async fn setstat_truncates_changes_mode_times_and_leaves_an_unchanged_owner_alone() {
    let dir = TempDir::new("setstat");
    let path = dir.join("f");
    fs::write(&path, "0123456789").expect("write");
    let mut s = server();
    let md = fs::metadata(&path).expect("stat");
    let attrs = FileAttributes {
        size: Some(4),
        permissions: Some(0o100640),
        atime: Some(1_000_000_000),
        mtime: Some(1_100_000_000),
        uid: Some(md.uid()),
        gid: Some(md.gid()),
        ..FileAttributes::empty()
    };
    s.setstat(1, path.clone(), attrs).await.expect("setstat");
    let md = fs::metadata(&path).expect("stat");
    assert_eq!(md.len(), 4);
    assert_eq!(md.mode() & 0o7777, 0o640);
    assert_eq!(md.atime(), 1_000_000_000);
    assert_eq!(md.mtime(), 1_100_000_000);

    let h = open(&mut s, &path, &[OpenFlags::WRITE])
        .await
        .expect("open");
    let attrs = FileAttributes {
        size: Some(1),
        permissions: Some(0o600),
        atime: Some(1_200_000_000),
        mtime: Some(1_300_000_000),
        ..FileAttributes::empty()
    };
    s.fsetstat(1, h, attrs).await.expect("fsetstat");
    let md = fs::metadata(&path).expect("stat");
    assert_eq!(
        (md.len(), md.mode() & 0o7777, md.mtime()),
        (1, 0o600, 1_300_000_000)
    );
    let e = s.setstat(1, dir.join("missing"), with_mode(0o600)).await;
    assert_eq!(code(e), StatusCode::NoSuchFile);
}

#[tokio::test]
async fn mkdir_rmdir_remove_and_hardlink() {
    let dir = TempDir::new("mkdir");
    let mut s = server();
    let d = dir.join("d");
    s.mkdir(1, d.clone(), with_mode(0o700))
        .await
        .expect("mkdir");
    assert_eq!(fs::metadata(&d).expect("stat").mode() & 0o7777, 0o700);
    assert_eq!(
        code(s.mkdir(1, d.clone(), FileAttributes::empty()).await),
        StatusCode::Failure
    );
    let f = dir.join("d/f");
    fs::write(&f, "x").expect("write");
    assert_eq!(code(s.rmdir(1, d.clone()).await), StatusCode::Failure);

    let mut data = Vec::new();
    let linked = dir.join("linked");
    for p in [&f, &linked] {
        data.extend((p.len() as u32).to_be_bytes());
        data.extend(p.as_bytes());
    }
    s.extended(1, "hardlink@openssh.com".into(), data)
        .await
        .expect("hardlink");
    assert_eq!(fs::metadata(&linked).expect("stat").nlink(), 2);

    s.remove(1, f.clone()).await.expect("remove");
    assert_eq!(code(s.remove(1, f).await), StatusCode::NoSuchFile);
    s.rmdir(1, d.clone()).await.expect("rmdir");
    assert!(!Path::new(&d).exists());
}

#[tokio::test]
async fn extensions_limits_statvfs_fsync_and_unknown() {
    let dir = TempDir::new("ext");
    let mut s = server();
    let Packet::ExtendedReply(r) = s
        .extended(1, "limits@openssh.com".into(), Vec::new())
        .await
        .expect("limits")
    else {
        panic!("limits answers an extended reply")
    };
    assert_eq!(r.data.len(), 32);
    assert_eq!(r.data[..8], u64::from(MAX_PACKET).to_be_bytes());
    assert_eq!(r.data[24..], (MAX_HANDLES as u64).to_be_bytes());

    let p = dir.join("");
    let mut data = (p.len() as u32).to_be_bytes().to_vec();
    data.extend(p.as_bytes());
    let Packet::ExtendedReply(r) = s
        .extended(1, "statvfs@openssh.com".into(), data)
        .await
        .expect("statvfs")
    else {
        panic!("statvfs answers an extended reply")
    };
    assert_eq!(r.data.len(), 11 * 8);
    let block_size = u64::from_be_bytes(r.data[..8].try_into().expect("8 bytes"));
    assert!(block_size > 0);

    let f = dir.join("f");
    let h = open(&mut s, &f, &[OpenFlags::WRITE, OpenFlags::CREATE])
        .await
        .expect("open");
    let mut data = (h.len() as u32).to_be_bytes().to_vec();
    data.extend(h.as_bytes());
    let Packet::Status(st) = s
        .extended(1, "fsync@openssh.com".into(), data)
        .await
        .expect("fsync")
    else {
        panic!("fsync answers a status")
    };
    assert_eq!(st.status_code, StatusCode::Ok);

    let e = s
        .extended(1, "copy-data".into(), Vec::new())
        .await
        .expect_err("unknown extension");
    assert_eq!(e.status_code, StatusCode::OpUnsupported);
    let e = s
        .extended(1, "statvfs@openssh.com".into(), vec![0, 0])
        .await
        .expect_err("short data");
    assert_eq!(e.status_code, StatusCode::BadMessage);
}

#[test]
fn home_expansion() {
    let names = Names::parse("dev:x:1000:1000::/home/dev:/bin/sh\n", "dev:x:1000:\n");
    assert_eq!(
        expand_home("~dev/x/y", &names).expect("~dev"),
        Path::new("/home/dev/x/y")
    );
    assert_eq!(
        expand_home("~dev", &names).expect("~dev"),
        Path::new("/home/dev")
    );
    assert_eq!(
        expand_home("plain/~x", &names).expect("no tilde"),
        Path::new("plain/~x")
    );
    let e = expand_home("~nobody/x", &names).expect_err("unknown user");
    assert_eq!(e.kind(), io::ErrorKind::NotFound);
}
