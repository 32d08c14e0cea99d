//! `sftp-server`: SFTP (protocol version 3, as OpenSSH's sftp-server speaks it, with
//! its common extensions) on stdin and stdout. devaipod's SSH server runs it by
//! `podman exec` in the workspace container, as the pod's remoteUser in its
//! workspaceFolder, for an SSH session's `sftp` subsystem: OpenSSH's `sftp`, and `scp`,
//! which speaks SFTP since OpenSSH 9.0. Images need no sftp-server of their own.
//!
//! The server does what the calling user may, no more and no less, as OpenSSH's does:
//! no chroot and no path checks (an SSH user can run a shell anyway); files it creates
//! are the user's, with the user's umask. Relative paths resolve against the current
//! directory (the workspaceFolder), which is also where `realpath(".")` (an SFTP
//! client's starting directory) points.
//!
//! russh-sftp reads and writes the packets; this module is the file system side. It
//! uses std's blocking calls: russh-sftp answers one request after the other anyway
//! (a client pipelines its reads and writes, and the replies keep their order).
//! Paths are strings on the wire (russh-sftp's); a name that is not UTF-8 is sent
//! lossily, so such a file is listed but cannot be opened by that name.

mod listing;

use std::collections::HashMap;
use std::ffi::CString;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use bytes::Bytes;
use russh_sftp::extensions::{
    self, ExpandPathExtension, FsyncExtension, HardlinkExtension, LimitsExtension, Statvfs,
    StatvfsExtension,
};
use russh_sftp::protocol::{
    Attrs, Data, ExtendedReply, File as Entry, FileAttributes, Handle, Name, OpenFlags, Packet,
    Status, StatusCode, Version,
};
use russh_sftp::server::{Config, Handler, StatusReply};
use tokio::sync::oneshot;

use self::listing::{Names, attrs_of, longname};

/// The longest packet a client may send (russh-sftp's default, OpenSSH's too).
const MAX_PACKET: u32 = 256 * 1024;
/// The most a read returns and a write may carry, told to clients by
/// `limits@openssh.com` (a packet's headers fit in the rest).
const MAX_READ: u32 = MAX_PACKET - 1024;
/// How many files and directories a client may hold open at once.
const MAX_HANDLES: usize = 1024;
/// Entries per `readdir` reply.
const DIR_BATCH: usize = 100;

const POSIX_RENAME: &str = "posix-rename@openssh.com";
const FSTATVFS: &str = "fstatvfs@openssh.com";

/// Serves one SFTP session on stdin and stdout, until the client closes stdin.
pub(crate) fn run() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the SFTP server's runtime")?;
    runtime.block_on(async {
        let (done, ended) = oneshot::channel::<()>();
        let server = Server::new(Some(done));
        let stdio = tokio::io::join(tokio::io::stdin(), tokio::io::stdout());
        let config = Config {
            max_client_packet_len: MAX_PACKET,
        };
        russh_sftp::server::run_with_config(stdio, server, config).await;
        // russh-sftp's task owns the server and drops it when the client's side ends;
        // nothing is ever sent, so the wait ends then.
        let _ended: Result<(), oneshot::error::RecvError> = ended.await;
    });
    Ok(())
}

/// What a handle stands for.
enum Open {
    File(File),
    Dir(Listing),
}

/// An open directory: entries not sent yet.
struct Listing {
    path: PathBuf,
    entries: fs::ReadDir,
    dots_sent: bool,
}

/// One client's session: its open handles and the container's user names.
pub(crate) struct Server {
    handles: HashMap<String, Open>,
    next_handle: u64,
    names: Option<Names>,
    max_handles: usize,
    /// Dropped with the server: tells `run` that the session ended.
    _done: Option<oneshot::Sender<()>>,
}

impl Server {
    fn new(done: Option<oneshot::Sender<()>>) -> Self {
        Self {
            handles: HashMap::new(),
            next_handle: 0,
            names: None,
            max_handles: MAX_HANDLES,
            _done: done,
        }
    }

    fn names(&mut self) -> &Names {
        self.names.get_or_insert_with(Names::load)
    }

    fn room(&self) -> Result<(), StatusReply> {
        if self.handles.len() >= self.max_handles {
            return Err(StatusCode::Failure.with_message(format!(
                "too many open files and directories ({}): close some first",
                self.max_handles
            )));
        }
        Ok(())
    }

    fn insert(&mut self, open: Open) -> Result<String, StatusReply> {
        self.room()?;
        self.next_handle += 1;
        let handle = self.next_handle.to_string();
        self.handles.insert(handle.clone(), open);
        Ok(handle)
    }

    fn get(&mut self, handle: &str) -> Result<&mut Open, StatusReply> {
        self.handles
            .get_mut(handle)
            .ok_or_else(|| bad_handle(handle))
    }

    fn file(&mut self, handle: &str) -> Result<&File, StatusReply> {
        match self.get(handle)? {
            Open::File(f) => Ok(f),
            Open::Dir(_) => Err(StatusCode::Failure
                .with_message(format!("handle {handle} is a directory's, not a file's"))),
        }
    }
}

fn bad_handle(handle: &str) -> StatusReply {
    StatusCode::Failure.with_message(format!("no open file or directory has handle {handle}"))
}

fn ok(id: u32) -> Status {
    Status {
        id,
        status_code: StatusCode::Ok,
        error_message: "Success".into(),
        language_tag: "en-US".into(),
    }
}

/// The status OpenSSH's sftp-server answers for an errno (its `errno_to_portable`),
/// with the system's message.
fn status_of(e: &io::Error) -> StatusReply {
    let code = match e.raw_os_error() {
        Some(libc::ENOENT | libc::ENOTDIR | libc::EBADF | libc::ELOOP) => StatusCode::NoSuchFile,
        Some(libc::EPERM | libc::EACCES | libc::EFAULT) => StatusCode::PermissionDenied,
        Some(libc::ENAMETOOLONG | libc::EINVAL) => StatusCode::BadMessage,
        Some(libc::ENOSYS) => StatusCode::OpUnsupported,
        Some(_) => StatusCode::Failure,
        None => match e.kind() {
            io::ErrorKind::NotFound => StatusCode::NoSuchFile,
            io::ErrorKind::PermissionDenied => StatusCode::PermissionDenied,
            _ => StatusCode::Failure,
        },
    };
    let text = e.to_string();
    // "No such file or directory (os error 2)": the client wants the words.
    let text = match text.find(" (os error ") {
        Some(i) => text[..i].to_string(),
        None => text,
    };
    code.with_message(text)
}

fn io<T>(r: io::Result<T>) -> Result<T, StatusReply> {
    r.map_err(|e| status_of(&e))
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "the path contains a NUL byte"))
}

fn os_result(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The absolute, symlink-free form of `path` ("" and "." are the current directory).
/// As OpenSSH's, the last component need not exist: a client asks for the name of a
/// file it is about to create.
fn real_path(path: &str) -> io::Result<PathBuf> {
    let p = Path::new(if path.is_empty() { "." } else { path });
    match fs::canonicalize(p) {
        Ok(r) => Ok(r),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let (Some(parent), Some(name)) = (p.parent(), p.file_name()) else {
                return Err(e);
            };
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            Ok(fs::canonicalize(parent)?.join(name))
        }
        Err(e) => Err(e),
    }
}

/// `~`, `~/x` and `~user/x` in the home directory (expand-path@openssh.com), then as
/// realpath. Anything else is left as it is.
fn expand_home(path: &str, names: &Names) -> io::Result<PathBuf> {
    let Some(rest) = path.strip_prefix('~') else {
        return Ok(PathBuf::from(path));
    };
    let (user, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let home = if user.is_empty() {
        std::env::var_os("HOME")
            .map(PathBuf::from)
            .or_else(|| names.home_of_uid(effective_uid()))
    } else {
        names.home_of(user)
    };
    let home = home.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("no home directory is known for \"~{user}\""),
        )
    })?;
    Ok(if tail.is_empty() {
        home
    } else {
        home.join(tail)
    })
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Opens as open(2) with the SFTP flags. The mode (the client's, else 0666) is the
/// new file's before the umask, as with any program that creates a file.
fn open_file(path: &str, flags: OpenFlags, attrs: &FileAttributes) -> io::Result<File> {
    let write = flags.intersects(OpenFlags::WRITE | OpenFlags::APPEND);
    let read = flags.contains(OpenFlags::READ) || !write;
    // The flags go to open(2) as they are: std refuses some combinations open(2)
    // takes (create without write access, append with truncate).
    let mut custom = 0;
    if flags.contains(OpenFlags::APPEND) {
        custom |= libc::O_APPEND;
    }
    if flags.contains(OpenFlags::CREATE) {
        custom |= libc::O_CREAT;
        if flags.contains(OpenFlags::EXCLUDE) {
            custom |= libc::O_EXCL;
        }
    }
    if flags.contains(OpenFlags::TRUNCATE) {
        custom |= libc::O_TRUNC;
    }
    OpenOptions::new()
        .read(read)
        .write(write)
        .custom_flags(custom)
        .mode(attrs.permissions.map_or(0o666, |m| m & 0o7777))
        .open(path)
}

/// A file to change attributes of: by path (following symlinks) or open.
enum Target<'a> {
    Path(&'a Path),
    File(&'a File),
}

/// setstat and fsetstat, in OpenSSH's order: size, mode, times, owner. An owner that
/// would not change is left alone (so a client that sends the owner it read back
/// succeeds as any user); a real change is the kernel's to allow (root, or a group of
/// the user's own).
fn set_attrs(target: Target, attrs: &FileAttributes) -> io::Result<()> {
    if let Some(size) = attrs.size {
        match target {
            Target::Path(p) => truncate(p, size)?,
            Target::File(f) => f.set_len(size)?,
        }
    }
    if let Some(mode) = attrs.permissions {
        let perms = Permissions::from_mode(mode & 0o7777);
        match target {
            Target::Path(p) => fs::set_permissions(p, perms)?,
            Target::File(f) => f.set_permissions(perms)?,
        }
    }
    if let (Some(atime), Some(mtime)) = (attrs.atime, attrs.mtime) {
        let at = |s: u32| UNIX_EPOCH + Duration::from_secs(u64::from(s));
        match target {
            Target::Path(p) => set_times(p, at(atime), at(mtime))?,
            Target::File(f) => f.set_times(
                fs::FileTimes::new()
                    .set_accessed(at(atime))
                    .set_modified(at(mtime)),
            )?,
        }
    }
    if attrs.uid.is_some() || attrs.gid.is_some() {
        use std::os::unix::fs::MetadataExt;
        let md = match target {
            Target::Path(p) => fs::metadata(p)?,
            Target::File(f) => f.metadata()?,
        };
        let uid = attrs.uid.filter(|u| *u != md.uid());
        let gid = attrs.gid.filter(|g| *g != md.gid());
        if uid.is_some() || gid.is_some() {
            match target {
                Target::Path(p) => std::os::unix::fs::chown(p, uid, gid)?,
                Target::File(f) => std::os::unix::fs::fchown(f, uid, gid)?,
            }
        }
    }
    Ok(())
}

/// truncate(2): by path, so that no FIFO or device gets opened.
fn truncate(path: &Path, size: u64) -> io::Result<()> {
    let c = c_path(path)?;
    let size = libc::off_t::try_from(size)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "size out of range"))?;
    // SAFETY: `c` is a NUL-terminated string that lives across the call.
    os_result(unsafe { libc::truncate(c.as_ptr(), size) })
}

/// utimensat(2) by path: a file the user may not read still takes new times.
fn set_times(path: &Path, atime: SystemTime, mtime: SystemTime) -> io::Result<()> {
    let c = c_path(path)?;
    let spec = |t: SystemTime| -> io::Result<libc::timespec> {
        let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        Ok(libc::timespec {
            tv_sec: libc::time_t::try_from(d.as_secs())
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "time out of range"))?,
            tv_nsec: 0,
        })
    };
    let times = [spec(atime)?, spec(mtime)?];
    // SAFETY: `c` is NUL-terminated and `times` holds the two timespecs utimensat reads;
    // both live across the call.
    os_result(unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), 0) })
}

/// SFTP version 3's rename: it fails when `new` exists (renameat2 RENAME_NOREPLACE;
/// on a file system without it, a check before rename(2), as OpenSSH falls back to).
fn rename_no_replace(old: &Path, new: &Path) -> io::Result<()> {
    let (o, n) = (c_path(old)?, c_path(new)?);
    // SAFETY: both are NUL-terminated strings that live across the call; the syscall
    // takes two (dirfd, path) pairs and flags.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            o.as_ptr(),
            libc::AT_FDCWD,
            n.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EINVAL | libc::ENOSYS) => {
            if fs::symlink_metadata(new).is_ok() {
                return Err(io::Error::from_raw_os_error(libc::EEXIST));
            }
            fs::rename(old, new)
        }
        _ => Err(e),
    }
}

/// statvfs(2) or fstatvfs(2) as statvfs@openssh.com replies.
#[allow(clippy::unnecessary_cast)] // the fields' widths differ between targets
fn statvfs_of(st: &libc::statvfs) -> Statvfs {
    let mut flags = 0;
    if st.f_flag & libc::ST_RDONLY != 0 {
        flags |= 1;
    }
    if st.f_flag & libc::ST_NOSUID != 0 {
        flags |= 2;
    }
    Statvfs {
        block_size: st.f_bsize as u64,
        fragment_size: st.f_frsize as u64,
        blocks: st.f_blocks as u64,
        blocks_free: st.f_bfree as u64,
        blocks_avail: st.f_bavail as u64,
        inodes: st.f_files as u64,
        inodes_free: st.f_ffree as u64,
        inodes_avail: st.f_favail as u64,
        fs_id: st.f_fsid as u64,
        flags,
        name_max: st.f_namemax as u64,
    }
}

fn statvfs_path(path: &Path) -> io::Result<Statvfs> {
    let c = c_path(path)?;
    // SAFETY: statvfs is plain integers, for which all zeroes is a value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is NUL-terminated and `st` is a statvfs the call fills; both live
    // across it.
    os_result(unsafe { libc::statvfs(c.as_ptr(), &mut st) })?;
    Ok(statvfs_of(&st))
}

fn statvfs_file(file: &File) -> io::Result<Statvfs> {
    use std::os::fd::AsRawFd;
    // SAFETY: as in statvfs_path.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: the fd is open for `file`'s lifetime and `st` lives across the call.
    os_result(unsafe { libc::fstatvfs(file.as_raw_fd(), &mut st) })?;
    Ok(statvfs_of(&st))
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The data of an extended request, as russh-sftp's types.
fn decode<T: serde::de::DeserializeOwned>(request: &str, data: Vec<u8>) -> Result<T, StatusReply> {
    let mut bytes = Bytes::from(data);
    russh_sftp::de::from_bytes(&mut bytes)
        .map_err(|e| StatusCode::BadMessage.with_message(format!("{request}: {e}")))
}

fn encode<T: serde::Serialize>(id: u32, value: &T) -> Result<Packet, StatusReply> {
    let data = russh_sftp::ser::to_bytes(value)
        .map_err(|e| StatusCode::Failure.with_message(e.to_string()))?;
    Ok(Packet::ExtendedReply(ExtendedReply {
        id,
        data: data.to_vec(),
    }))
}

/// A one-name reply (realpath, readlink, expand-path): the name as its own longname,
/// no attributes, as OpenSSH's sftp-server sends.
fn one_name(id: u32, path: &Path) -> Name {
    let name = path.to_string_lossy().into_owned();
    Name {
        id,
        files: vec![Entry {
            filename: name.clone(),
            longname: name,
            attrs: FileAttributes::empty(),
        }],
    }
}

impl Handler for Server {
    type Error = StatusReply;

    fn unimplemented(&self) -> Self::Error {
        StatusCode::OpUnsupported.with_message("this request is not supported")
    }

    async fn init(
        &mut self,
        _version: u32,
        _extensions: HashMap<String, String>,
    ) -> Result<Version, Self::Error> {
        let extensions = [
            (POSIX_RENAME, "1"),
            (extensions::STATVFS, "2"),
            (FSTATVFS, "2"),
            (extensions::HARDLINK, "1"),
            (extensions::FSYNC, "1"),
            (extensions::LIMITS, "1"),
            (extensions::EXPAND_PATH, "1"),
        ];
        Ok(Version {
            version: russh_sftp::protocol::VERSION,
            extensions: extensions
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        })
    }

    async fn open(
        &mut self,
        id: u32,
        filename: String,
        pflags: OpenFlags,
        attrs: FileAttributes,
    ) -> Result<Handle, Self::Error> {
        // Refused before the open, so that O_CREAT makes nothing.
        self.room()?;
        let file = io(open_file(&filename, pflags, &attrs))?;
        let handle = self.insert(Open::File(file))?;
        Ok(Handle { id, handle })
    }

    async fn close(&mut self, id: u32, handle: String) -> Result<Status, Self::Error> {
        match self.handles.remove(&handle) {
            Some(_) => Ok(ok(id)),
            None => Err(bad_handle(&handle)),
        }
    }

    async fn read(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        len: u32,
    ) -> Result<Data, Self::Error> {
        let file = self.file(&handle)?;
        let len = len.min(MAX_READ) as usize;
        let mut data = vec![0; len];
        let mut n = 0;
        while n < len {
            match file.read_at(&mut data[n..], offset + n as u64) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(status_of(&e)),
            }
        }
        if n == 0 && len > 0 {
            return Err(StatusCode::Eof.with_message("End of file"));
        }
        data.truncate(n);
        Ok(Data { id, data })
    }

    async fn write(
        &mut self,
        id: u32,
        handle: String,
        offset: u64,
        data: Vec<u8>,
    ) -> Result<Status, Self::Error> {
        // With O_APPEND, Linux's pwrite appends whatever the offset, as SFTP wants.
        io(self.file(&handle)?.write_all_at(&data, offset))?;
        Ok(ok(id))
    }

    async fn lstat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        let md = io(fs::symlink_metadata(&path))?;
        Ok(Attrs {
            id,
            attrs: attrs_of(&md),
        })
    }

    async fn stat(&mut self, id: u32, path: String) -> Result<Attrs, Self::Error> {
        let md = io(fs::metadata(&path))?;
        Ok(Attrs {
            id,
            attrs: attrs_of(&md),
        })
    }

    async fn fstat(&mut self, id: u32, handle: String) -> Result<Attrs, Self::Error> {
        let md = match self.get(&handle)? {
            Open::File(f) => io(f.metadata())?,
            Open::Dir(d) => io(fs::metadata(&d.path))?,
        };
        Ok(Attrs {
            id,
            attrs: attrs_of(&md),
        })
    }

    async fn setstat(
        &mut self,
        id: u32,
        path: String,
        attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        io(set_attrs(Target::Path(Path::new(&path)), &attrs))?;
        Ok(ok(id))
    }

    async fn fsetstat(
        &mut self,
        id: u32,
        handle: String,
        attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        match self.get(&handle)? {
            Open::File(f) => io(set_attrs(Target::File(f), &attrs))?,
            Open::Dir(d) => io(set_attrs(Target::Path(&d.path), &attrs))?,
        }
        Ok(ok(id))
    }

    async fn opendir(&mut self, id: u32, path: String) -> Result<Handle, Self::Error> {
        let entries = io(fs::read_dir(&path))?;
        let handle = self.insert(Open::Dir(Listing {
            path: PathBuf::from(path),
            entries,
            dots_sent: false,
        }))?;
        Ok(Handle { id, handle })
    }

    async fn readdir(&mut self, id: u32, handle: String) -> Result<Name, Self::Error> {
        let names = self.names.get_or_insert_with(Names::load);
        let Some(open) = self.handles.get_mut(&handle) else {
            return Err(bad_handle(&handle));
        };
        let Open::Dir(dir) = open else {
            return Err(StatusCode::Failure
                .with_message(format!("handle {handle} is a file's, not a directory's")));
        };
        let now = now_secs();
        let mut files = Vec::new();
        if !dir.dots_sent {
            dir.dots_sent = true;
            for (name, path) in [(".", dir.path.clone()), ("..", dir.path.join(".."))] {
                if let Ok(md) = fs::symlink_metadata(&path) {
                    files.push(Entry {
                        filename: name.into(),
                        longname: longname(name, &md, names, now),
                        attrs: attrs_of(&md),
                    });
                }
            }
        }
        while files.len() < DIR_BATCH {
            let Some(entry) = dir.entries.next() else {
                break;
            };
            let entry = io(entry)?;
            // Gone since the directory was read: not listed.
            let Ok(md) = entry.metadata() else {
                continue;
            };
            let name = entry.file_name().to_string_lossy().into_owned();
            files.push(Entry {
                longname: longname(&name, &md, names, now),
                filename: name,
                attrs: attrs_of(&md),
            });
        }
        if files.is_empty() {
            return Err(StatusCode::Eof.with_message("End of directory"));
        }
        Ok(Name { id, files })
    }

    async fn remove(&mut self, id: u32, filename: String) -> Result<Status, Self::Error> {
        io(fs::remove_file(&filename))?;
        Ok(ok(id))
    }

    async fn mkdir(
        &mut self,
        id: u32,
        path: String,
        attrs: FileAttributes,
    ) -> Result<Status, Self::Error> {
        let mode = attrs.permissions.map_or(0o777, |m| m & 0o7777);
        io(fs::DirBuilder::new().mode(mode).create(&path))?;
        Ok(ok(id))
    }

    async fn rmdir(&mut self, id: u32, path: String) -> Result<Status, Self::Error> {
        io(fs::remove_dir(&path))?;
        Ok(ok(id))
    }

    async fn realpath(&mut self, id: u32, path: String) -> Result<Name, Self::Error> {
        Ok(one_name(id, &io(real_path(&path))?))
    }

    async fn rename(
        &mut self,
        id: u32,
        oldpath: String,
        newpath: String,
    ) -> Result<Status, Self::Error> {
        io(rename_no_replace(Path::new(&oldpath), Path::new(&newpath)))?;
        Ok(ok(id))
    }

    async fn readlink(&mut self, id: u32, path: String) -> Result<Name, Self::Error> {
        Ok(one_name(id, &io(fs::read_link(&path))?))
    }

    /// OpenSSH sends the link's target first and the link second (the reverse of the
    /// draft's order), and every client follows OpenSSH; russh-sftp names the fields
    /// after the draft.
    async fn symlink(
        &mut self,
        id: u32,
        linkpath: String,
        targetpath: String,
    ) -> Result<Status, Self::Error> {
        let (target, link) = (linkpath, targetpath);
        io(std::os::unix::fs::symlink(&target, &link))?;
        Ok(ok(id))
    }

    async fn extended(
        &mut self,
        id: u32,
        request: String,
        data: Vec<u8>,
    ) -> Result<Packet, Self::Error> {
        match request.as_str() {
            POSIX_RENAME => {
                let r: HardlinkExtension = decode(&request, data)?;
                io(fs::rename(&r.oldpath, &r.newpath))?;
                Ok(ok(id).into())
            }
            extensions::HARDLINK => {
                let r: HardlinkExtension = decode(&request, data)?;
                io(fs::hard_link(&r.oldpath, &r.newpath))?;
                Ok(ok(id).into())
            }
            extensions::STATVFS => {
                let r: StatvfsExtension = decode(&request, data)?;
                encode(id, &io(statvfs_path(Path::new(&r.path)))?)
            }
            FSTATVFS => {
                let r: FsyncExtension = decode(&request, data)?;
                let st = io(statvfs_file(self.file(&r.handle)?))?;
                encode(id, &st)
            }
            extensions::FSYNC => {
                let r: FsyncExtension = decode(&request, data)?;
                io(self.file(&r.handle)?.sync_all())?;
                Ok(ok(id).into())
            }
            extensions::LIMITS => encode(
                id,
                &LimitsExtension {
                    max_packet_len: u64::from(MAX_PACKET),
                    max_read_len: u64::from(MAX_READ),
                    max_write_len: u64::from(MAX_READ),
                    max_open_handles: MAX_HANDLES as u64,
                },
            ),
            extensions::EXPAND_PATH => {
                let r: ExpandPathExtension = decode(&request, data)?;
                let expanded = io(expand_home(&r.path, self.names()))?;
                let real = io(real_path(&expanded.to_string_lossy()))?;
                Ok(one_name(id, &real).into())
            }
            _ => Err(StatusCode::OpUnsupported
                .with_message(format!("the extension {request} is not supported"))),
        }
    }
}

#[cfg(test)]
mod tests;
