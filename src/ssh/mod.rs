//! SSH for editors and stock OpenSSH clients, with no sshd in the user's image:
//! devaipod speaks the server side of SSH itself over its stdin and stdout (the
//! ProxyCommand of the entry `devaipod ssh-config` writes) and maps channels onto
//! Podman exec in the workspace. docs/ssh.md has the user's side.
//!
//! - [`entry`]: the client entry's text, its quoting, the `Include` and toolbox checks (pure);
//! - [`entry_file`]: the entry's file in `~/.ssh/config.d`, written and removed;
//! - [`keys`]: the pod's host key and known_hosts pin, the user's accepted keys;
//! - [`server`]: the protocol's server side and the channels' mapping onto exec;
//! - [`relay`]: a byte stream to a port inside the pod (`ssh -L`/`-D`, `devaipod forward`).

pub(crate) mod entry;
pub(crate) mod entry_file;
pub(crate) mod keys;
pub(crate) mod relay;
pub(crate) mod server;
