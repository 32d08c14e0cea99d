#!/usr/bin/env python3
"""Derives agent.json, the agent container's seccomp profile, from Podman's default
profile (containers-common's seccomp.json): the default minus what the agent never needs
and what widens the kernel attack surface: new user namespaces (clone with CLONE_NEW*
flags, unshare, setns), mounting, keyrings, bpf, ptrace and process_vm_*, io_uring,
userfaultfd, perf_event_open. clone3 answers ENOSYS so libc falls back to clone, whose
flags can be checked. The result is committed; devaipod embeds it.

    python3 derive.py /usr/share/containers/seccomp.json > agent.json
"""
import json
import sys

src = json.load(open(sys.argv[1] if len(sys.argv) > 1 else "/usr/share/containers/seccomp.json"))
deny_nosys = {"clone3", "io_uring_setup", "io_uring_enter", "io_uring_register"}
deny_eperm = {
    "mount", "umount", "umount2", "unshare", "setns", "pivot_root", "fsopen", "fsmount",
    "fsconfig", "fspick", "move_mount", "open_tree", "mount_setattr", "keyctl", "add_key",
    "request_key", "name_to_handle_at", "userfaultfd", "bpf", "perf_event_open", "ptrace",
    "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd", "syslog",
}
gone = deny_nosys | deny_eperm | {"clone"}
kept = []
for rule in src["syscalls"]:
    rule = dict(rule)
    rule["names"] = [n for n in rule["names"] if n not in gone]
    if rule["names"]:
        kept.append(rule)
src["syscalls"] = kept + [
    # clone without any CLONE_NEW* namespace flag (0x7E020000, as Docker's profile).
    {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
     "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
    {"names": sorted(deny_nosys), "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
    {"names": sorted(deny_eperm), "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
]
json.dump(src, sys.stdout, indent=1, sort_keys=True)
print()
