use std::collections::BTreeMap;
use std::path::PathBuf;

use super::labels::SECRETS as SECRETS_LABEL;
use super::paths::{AGENT_CONFIG_FILE, AGENT_HOME};
use super::ports::parse_ports;
use super::workspace::keep_alive;
use super::*;
use crate::devcontainer::DevContainer;
use crate::names::Name;

pub(crate) fn input() -> PlanInput {
    PlanInput {
        name: Name::new("demo").expect("name"),
        repo: RepoFacts {
            root: PathBuf::from("/home/u/src/proj"),
            subdir: PathBuf::new(),
            path: PathBuf::from("/home/u/src/proj"),
            folder_name: "proj".into(),
            head: "0123456789abcdef0123456789abcdef01234567".into(),
            branch: Some("main".into()),
            uncommitted: 0,
        },
        devcontainer: DevContainer {
            image: Some("localhost/devaipod-base:latest".into()),
            remote_user: Some("dev".into()),
            ..Default::default()
        },
        devcontainer_path: Some(PathBuf::from(
            "/home/u/src/proj/.devcontainer/devcontainer.json",
        )),
        devcontainer_text: None,
        image_override: None,
        image_state: ImageState::Present { id: "abc".into() },
        build: None,
        extra_labels: BTreeMap::new(),
        ready_timeout_secs: 60,
        config_warnings: Vec::new(),
        agent_secrets: Vec::new(),
        trusted_secrets: Vec::new(),
        agent_pids_limit: AGENT_PIDS_LIMIT,
        agent_memory_limit: AGENT_MEMORY_LIMIT,
        agent_disk_limit: Some(super::AGENT_DISK_LIMIT),
        volume_quota: super::VolumeQuota::Unknown,
        trust: None,
        container_env_from_host: Vec::new(),
        env_files: BTreeMap::new(),
        image_command: None,
        approved: Vec::new(),
        bundled_id: Some("0123456789abcdef".into()),
        features_image: None,
        feature_settings: Vec::new(),
        cdi_gpu: None,
        agent_model: None,
        agent_model_from: None,
        agent_opencode: None,
        image_path: None,
        gator: None,
        network: input::NetworkInput::default(),
        net_image: "localhost/devaipod-net:0123456789ab".into(),
        net_image_state: ImageState::Present { id: "net".into() },
    }
}

#[test]
fn the_default_plan() {
    let plan = build(&input()).expect("plan");
    assert_eq!(plan.pod.name, "devaipod-demo");
    assert_eq!(plan.pod.share, ["net"]);
    assert_eq!(plan.repo.workspace_folder, "/workspaces/proj");
    let roles: Vec<Role> = plan.containers.iter().map(|c| c.role).collect();
    assert_eq!(
        roles,
        [Role::Workspace, Role::Agent, Role::Rules, Role::Proxy]
    );
    let ws = plan.container(Role::Workspace).expect("ws");
    assert!(ws.init, "workspace needs an init so stop is immediate");
    assert_eq!(ws.user, None);
    assert_eq!(ws.mounts[0].target, "/workspaces/proj");
    let agent = plan.container(Role::Agent).expect("agent");
    assert_eq!(agent.cap_drop, ["ALL"]);
    assert!(agent.cap_add.is_empty());
    assert!(agent.no_new_privileges);
    assert_eq!(
        agent.user.as_deref(),
        Some("4096:4096"),
        "the agent has its own uid"
    );
    assert_eq!(agent.command[..2], ["/bin/sh", "-c"]);
    let script = &agent.command[2];
    assert!(
        script.contains("exec \"$OC\" serve --hostname 127.0.0.1 --port 4096"),
        "{script}"
    );
    assert!(script.contains(PASSWORD_FILE), "{script}");
    assert_eq!(agent.secrets.len(), 2);
    assert_eq!(agent.secrets[0].target, PASSWORD_FILE);
    assert_eq!(agent.secrets[1].target, AGENT_CONFIG_FILE);
    assert_eq!(agent.env["OPENCODE_CONFIG"], AGENT_CONFIG_FILE);
    assert_eq!(agent.env["OPENCODE_DISABLE_PROJECT_CONFIG"], "1");
    assert_eq!(agent.secrets[0].mode, 0o400);
    assert_eq!(plan.secrets[0].name, "devaipod-demo-agent-password");
    assert_eq!(
        plan.pod.labels.get(SECRETS_LABEL).map(String::as_str),
        Some("devaipod-demo-agent-password,devaipod-demo-agent-config,devaipod-demo-net-config")
    );
    assert_eq!(agent.seccomp, Seccomp::Agent);
    assert!(agent.read_only);
    assert!(agent.tmpfs.iter().any(|t| t == "/run/secrets"));
    assert!(agent.mounts.iter().any(|m| m.target == AGENT_HOME));
    assert_eq!(agent.env.get("HOME").map(String::as_str), Some(AGENT_HOME));
    for obj_labels in plan
        .containers
        .iter()
        .map(|c| &c.labels)
        .chain(plan.volumes.iter().map(|v| &v.labels))
        .chain([&plan.pod.labels])
    {
        assert_eq!(
            obj_labels.get(labels::POD).map(String::as_str),
            Some("demo")
        );
        assert_eq!(
            obj_labels.get(labels::REPO).map(String::as_str),
            Some("/home/u/src/proj")
        );
        assert!(obj_labels.contains_key(labels::ROLE));
        assert!(obj_labels.contains_key(labels::VERSION));
    }
    assert!(plan.warnings.is_empty());
}

#[test]
fn dry_run_json_shape_is_stable() {
    let mut i = input();
    i.extra_labels.insert("team".into(), "a".into());
    let plan = build(&i).expect("plan");
    let mut v = serde_json::to_value(&plan).expect("json");
    // The version label changes with every release.
    for c in v["containers"].as_array_mut().expect("containers") {
        c["labels"][labels::VERSION] = "X".into();
    }
    for vol in v["volumes"].as_array_mut().expect("volumes") {
        vol["labels"][labels::VERSION] = "X".into();
    }
    v["pod"]["labels"][labels::VERSION] = "X".into();
    for secret in v["secrets"].as_array_mut().expect("secrets") {
        secret["labels"][labels::VERSION] = "X".into();
    }
    insta::assert_json_snapshot!(v);
}

#[test]
fn env_values_are_never_serialized() {
    let plan = build(&input()).expect("plan");
    let text = serde_json::to_string(&plan).expect("json");
    assert!(
        text.contains(
            "\"env_names\":[\"HOME\",\"HTTPS_PROXY\",\"HTTP_PROXY\",\"NO_PROXY\",\"OPENCODE_CONFIG\",\"OPENCODE_DISABLE_AUTOUPDATE\",\"OPENCODE_DISABLE_MODELS_FETCH\",\"OPENCODE_DISABLE_PROJECT_CONFIG\",\"http_proxy\",\"https_proxy\",\"no_proxy\"]"
        ),
        "{text}"
    );
    assert!(!text.contains("\"env\""), "{text}");
}

#[test]
fn overrides_and_subfolders() {
    let mut i = input();
    i.image_override = Some("localhost/other:2".into());
    i.devcontainer.workspace_folder = Some("/src/".into());
    i.devcontainer.container_user = Some("1000".into());
    i.devcontainer.remote_user = None;
    i.repo.subdir = PathBuf::from("examples/hello");
    let plan = build(&i).expect("plan");
    assert_eq!(plan.image.reference, "localhost/other:2");
    assert_eq!(plan.image.source, "--image");
    assert_eq!(plan.repo.workspace_folder, "/src");
    assert_eq!(plan.repo.workdir, "/src/examples/hello");
    assert_eq!(plan.repo.owner.as_deref(), Some("1000"));
    // The network's containers run devaipod-net's own image, from its root.
    for c in plan
        .containers
        .iter()
        .filter(|c| ![Role::Rules, Role::Proxy].contains(&c.role))
    {
        assert_eq!(c.image, "localhost/other:2");
        assert_eq!(c.workdir, "/src/examples/hello");
    }
    assert_eq!(
        plan.container(Role::Workspace)
            .and_then(|c| c.user.as_deref()),
        Some("1000")
    );
    assert_eq!(
        plan.container(Role::Agent).and_then(|c| c.user.as_deref()),
        Some("4096:4096")
    );
}

#[test]
fn refusals() {
    let mut i = input();
    i.devcontainer.image = None;
    assert_eq!(build(&i), Err(PlanError::NoImage));
    let mut i = input();
    i.devcontainer.workspace_folder = Some("relative".into());
    assert!(matches!(
        build(&i),
        Err(PlanError::RelativeWorkspaceFolder { .. })
    ));
    let mut i = input();
    i.extra_labels
        .insert("io.devaipod.pod".into(), "evil".into());
    assert!(matches!(build(&i), Err(PlanError::ReservedLabel(_))));
}

#[test]
fn dirty_tree_warns() {
    let mut i = input();
    i.repo.uncommitted = 3;
    let plan = build(&i).expect("plan");
    assert_eq!(plan.warnings.len(), 1);
    assert!(
        plan.warnings[0].contains("3 uncommitted"),
        "{:?}",
        plan.warnings
    );
}

#[test]
fn image_references_are_validated() {
    for ok in [
        "localhost/devaipod-base:latest",
        "quay.io/a/b@sha256:abc",
        "debian",
        "a_b.c-d:1",
    ] {
        assert!(valid_image(ok), "{ok}");
    }
    for bad in [
        "",
        "--privileged",
        "-v=/:/h",
        "a b",
        "a;b",
        "a\nb",
        "$(x)",
        "/abs",
    ] {
        assert!(!valid_image(bad), "{bad}");
        let mut i = input();
        i.image_override = Some(bad.into());
        assert!(
            matches!(build(&i), Err(PlanError::BadImage { .. })),
            "{bad}"
        );
    }
}

#[test]
fn workspace_folders_stay_out_of_system_paths() {
    for bad in [
        "/",
        "/proc/self",
        "/etc",
        "/usr/src",
        "/home/agent",
        "/var/lib/devaipod/x",
        "/w/../etc",
        "/run/x",
    ] {
        let mut i = input();
        i.devcontainer.workspace_folder = Some(bad.into());
        assert!(
            matches!(build(&i), Err(PlanError::ReservedWorkspaceFolder { .. })),
            "{bad}"
        );
    }
    for ok in ["/workspaces/x", "/src", "/home/dev/project", "/w/etcetera"] {
        let mut i = input();
        i.devcontainer.workspace_folder = Some(ok.into());
        assert!(build(&i).is_ok(), "{ok}");
    }
}

#[test]
fn lifecycle_commands_in_every_form() {
    use serde_json::json;
    assert_eq!(
        Command::from_value(&json!("make")),
        Some(Command::Shell("make".into()))
    );
    assert_eq!(
        Command::from_value(&json!(["a", "b"])),
        Some(Command::Exec(vec!["a".into(), "b".into()]))
    );
    assert_eq!(Command::from_value(&json!("")), None);
    assert_eq!(Command::from_value(&json!([])), None);
    assert_eq!(Command::from_value(&json!([1])), None);
    let Some(Command::Parallel(m)) =
        Command::from_value(&json!({"x": "a", "y": ["b"], "z": {"n": "c"}}))
    else {
        panic!("parallel");
    };
    assert_eq!(m.len(), 2, "nested objects are not commands");
    assert_eq!(
        Command::Shell("a b".into()).argv(),
        ["/bin/sh", "-c", "a b"]
    );

    let mut i = input();
    i.devcontainer.on_create_command = Some(json!("one"));
    i.devcontainer.post_create_command = Some(json!(["two"]));
    i.devcontainer.post_start_command = Some(json!("three"));
    let plan = build(&i).expect("plan");
    let create: Vec<&str> = plan
        .lifecycle
        .create
        .iter()
        .map(|s| s.property.as_str())
        .collect();
    assert_eq!(
        create,
        ["onCreateCommand", "postCreateCommand", "postStartCommand"]
    );
    assert_eq!(plan.lifecycle.start.len(), 1);
}

#[test]
fn forwarded_and_app_ports() {
    use serde_json::json;
    let mut w = Vec::new();
    let ports = parse_ports(
        &[
            json!(3000),
            json!("localhost:5000"),
            json!("db:5432"),
            json!(3000),
        ],
        Some(&json!(["8001:8080", 9000])),
        &mut w,
    )
    .expect("ports");
    let got: Vec<(u16, Option<u16>)> = ports
        .iter()
        .map(|p| (p.container_port, p.host_port))
        .collect();
    assert_eq!(
        got,
        [(3000, None), (5000, None), (8080, Some(8001)), (9000, None)]
    );
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(parse_ports(&[json!("x")], None, &mut w).is_err());
    assert!(parse_ports(&[json!(0)], None, &mut w).is_err());
    assert!(parse_ports(&[json!(70000)], None, &mut w).is_err());
    assert!(parse_ports(&[json!({"a": 1})], None, &mut w).is_err());
}

#[test]
fn workspace_mount_moves_the_clone_volume_and_needs_workspace_folder() {
    let mut i = input();
    i.devcontainer.workspace_mount = Some("source=/home/u/src/proj,target=/work,type=bind".into());
    i.devcontainer.workspace_folder = Some("/work/sub".into());
    let plan = build(&i).expect("plan");
    assert_eq!(plan.repo.workspace_folder, "/work");
    assert_eq!(plan.repo.workdir, "/work/sub");
    let ws = plan.container(Role::Workspace).expect("ws");
    assert!(
        ws.mounts
            .iter()
            .any(|m| m.target == "/work" && m.kind == MountKind::Volume)
    );
    assert!(
        ws.mounts.iter().all(|m| m.kind != MountKind::Bind),
        "never bind-mounted"
    );
    assert!(plan.warnings.iter().any(|w| w.contains("not bind-mounted")));
    i.devcontainer.workspace_folder = Some("/elsewhere".into());
    let e = build(&i).expect_err("outside").to_string();
    assert!(
        e.contains("not inside workspaceMount's target /work"),
        "{e}"
    );
    i.devcontainer.workspace_folder = None;
    let e = build(&i).expect_err("needs folder").to_string();
    assert!(e.contains("needs workspaceFolder"), "{e}");
}

#[test]
fn override_command_false_runs_the_images_command_wrapped() {
    let mut i = input();
    i.devcontainer.override_command = Some(false);
    i.image_command = Some(vec!["/entry".into(), "serve".into()]);
    let plan = build(&i).expect("plan");
    let cmd = &plan.container(Role::Workspace).expect("ws").command;
    assert_eq!(&cmd[..2], ["/bin/sh", "-c"]);
    assert!(cmd[2].contains("trap \"exit 0\" 15"));
    assert_eq!(&cmd[3..], ["-", "/entry", "serve"]);
    i.image_command = Some(vec![]);
    let e = build(&i).expect_err("no cmd").to_string();
    assert!(e.contains("no ENTRYPOINT or CMD"), "{e}");
    // The default: the same wrapper with nothing to run, so it waits (and exits on TERM).
    let plan = build(&input()).expect("plan");
    assert_eq!(
        plan.container(Role::Workspace).expect("ws").command,
        keep_alive(&[], &[])
    );
}

#[test]
fn widening_settings_need_consent_and_stay_in_the_workspace() {
    let mut i = input();
    i.devcontainer.privileged = Some(true);
    i.devcontainer.security_opt = Some(vec!["seccomp=unconfined".into()]);
    i.devcontainer.run_args = Some(vec![
        "--device=/dev/fuse".into(),
        "--dns=10.0.0.1".into(),
        "--shm-size=1g".into(),
    ]);
    let e = build(&i).expect_err("consent").to_string();
    assert!(
        e.contains("--device /dev/fuse")
            && e.contains("privileged")
            && e.contains("securityOpt seccomp=unconfined"),
        "{e}"
    );
    i.trust = Some("--trust".into());
    let plan = build(&i).expect("plan");
    let ws = plan.container(Role::Workspace).expect("ws");
    assert!(ws.extra.privileged);
    assert_eq!(ws.extra.devices, ["/dev/fuse"]);
    assert_eq!(ws.security_opt, ["seccomp=unconfined"]);
    assert_eq!(plan.pod.dns, ["10.0.0.1"]);
    let agent = plan.container(Role::Agent).expect("agent");
    assert_eq!(agent.extra, Extras::default());
    assert_eq!(agent.cap_drop, ["ALL"]);
    // What every pod's agent runs is out of reach of a workspace that could remount it.
    assert!(ws.shared_mounts.is_empty(), "{:?}", ws.shared_mounts);
    assert!(!agent.shared_mounts.is_empty());
    assert!(!plan.pod.labels.contains_key(crate::plan::labels::HELPER));
    assert!(
        plan.warnings
            .iter()
            .any(|w| w.starts_with("the workspace is privileged or has SYS_ADMIN")),
        "{:?}",
        plan.warnings
    );
    // privileged, the device, the security option, and --dns (the whole pod's).
    assert_eq!(plan.trust.applied.len(), 4, "{:?}", plan.trust.applied);
    i.devcontainer.security_opt = Some(vec!["systempaths=unconfined".into()]);
    assert!(build(&i).is_err());
    i.devcontainer.security_opt = None;
    i.devcontainer.run_args = Some(vec!["--gpus=all".into()]);
    let e = build(&i).expect_err("gpus").to_string();
    assert!(e.contains("CDI"), "{e}");
}

#[test]
fn gpus_map_to_the_hosts_cdi_devices() {
    assert_eq!(
        cdi_gpu_in(&["cdiVersion: 0.5.0\nkind: nvidia.com/gpu\ndevices: []\n".into()]),
        Some("nvidia.com/gpu=all".into())
    );
    assert_eq!(
        cdi_gpu_in(&[
            r#"{"cdiVersion": "0.6.0", "kind": "amd.com/gpu", "devices": []}"#.replace(", ", ",\n")
        ]),
        Some("amd.com/gpu=all".into())
    );
    assert_eq!(cdi_gpu_in(&["kind: vendor.com/fpga".into()]), None);
    let mut i = input();
    i.devcontainer.host_requirements = Some(serde_json::json!({"gpu": true}));
    let e = build(&i).expect_err("no CDI").to_string();
    assert!(e.contains("no CDI GPU specification"), "{e}");
    i.devcontainer.host_requirements = Some(serde_json::json!({"gpu": "optional"}));
    let plan = build(&i).expect("optional");
    assert!(plan.warnings.iter().any(|w| w.contains("gets no GPU")));
    i.cdi_gpu = Some("nvidia.com/gpu=all".into());
    for hr in [
        serde_json::json!({"gpu": true}),
        serde_json::json!({"gpu": "optional"}),
    ] {
        i.devcontainer.host_requirements = Some(hr);
        let plan = build(&i).expect("gpu");
        let ws = plan.container(Role::Workspace).expect("ws");
        assert_eq!(ws.extra.devices, ["nvidia.com/gpu=all"]);
        assert!(
            plan.container(Role::Agent)
                .expect("agent")
                .extra
                .devices
                .is_empty()
        );
    }
    i.devcontainer.host_requirements = None;
    i.devcontainer.run_args = Some(vec!["--gpus=all".into()]);
    let plan = build(&i).expect("--gpus");
    assert_eq!(
        plan.container(Role::Workspace).expect("ws").extra.devices,
        ["nvidia.com/gpu=all"]
    );
}

#[test]
fn the_agent_config_merges_the_users_table_and_is_never_printed() {
    let mut i = input();
    i.agent_model = Some("fake/fake-model".into());
    i.agent_opencode = Some(serde_json::json!({
        "provider": {"fake": {"options": {"apiKey": "sk-should-not-print"}}},
        "permission": {"bash": "ask"}
    }));
    let plan = build(&i).expect("plan");
    let cfg: serde_json::Value = serde_json::from_str(&plan.agent_config.content).expect("json");
    assert_eq!(cfg["model"], "fake/fake-model");
    assert_eq!(cfg["permission"]["bash"], "ask", "the user's table wins");
    assert_eq!(cfg["permission"]["edit"], "allow", "merged key by key");
    assert_eq!(plan.agent_config.model.as_deref(), Some("fake/fake-model"));
    let text = serde_json::to_string(&plan).expect("json");
    assert!(!text.contains("sk-should-not-print"), "{text}");
    assert!(plan.pod.labels[SECRETS_LABEL].contains("devaipod-demo-agent-config"));
}

#[test]
fn the_gator_holds_the_tokens_and_the_agent_gets_only_its_mcp_entry() {
    let mut i = input();
    i.trusted_secrets = vec![
        UserSecret {
            env_name: "GH_TOKEN".into(),
            existing: None,
        },
        UserSecret {
            env_name: "OTHER_SECRET".into(),
            existing: None,
        },
    ];
    i.gator = Some(GatorInput {
        image: "localhost/gator:1".into(),
        scopes: gator::parse_scopes(&["github:octo/hello:create-draft".to_string()], false)
            .expect("scopes"),
        gitlab_host: None,
        jira_host: None,
        jira_username: None,
        entrypoint: Some(vec!["service-gator".into()]),
    });
    let plan = build(&i).expect("plan");
    let g = plan.container(Role::Gator).expect("gator");
    assert_eq!(g.cap_drop, ["ALL"]);
    assert!(g.no_new_privileges && g.read_only);
    assert_eq!(g.user.as_deref(), Some("65534:65534"));
    assert_eq!(g.env["GH_TOKEN_FILE"], "/run/secrets/GH_TOKEN");
    assert_eq!(g.secrets.len(), 1, "only the token service-gator reads");
    assert_eq!(g.secrets[0].mode, 0o400);
    assert_eq!(g.secrets[0].owner.as_deref(), Some("65534"));
    let agent = plan.container(Role::Agent).expect("agent");
    assert!(
        agent.secrets.iter().all(|s| !s.name.contains("gh_token")),
        "{:?}",
        agent.secrets
    );
    assert!(agent.env.keys().all(|k| !k.contains("TOKEN")));
    let cfg: serde_json::Value = serde_json::from_str(&plan.agent_config.content).expect("json");
    assert_eq!(
        cfg["mcp"]["service-gator"]["url"],
        "http://127.0.0.1:8765/mcp"
    );
    let gp = plan.gator.as_ref().expect("gator plan");
    assert_eq!(gp.scopes, ["github:octo/hello:read,create-draft"]);
    let text = serde_json::to_string(&plan).expect("json");
    assert!(text.contains("GH_TOKEN_FILE <- GH_TOKEN"), "{text}");
    // No token for a service with scopes: a warning.
    i.trusted_secrets.clear();
    let plan = build(&i).expect("plan");
    assert!(
        plan.warnings.iter().any(|w| w.contains("no token")),
        "{:?}",
        plan.warnings
    );
}

#[test]
fn a_workspace_that_can_remount_is_told_apart() {
    let plan = build(&input()).expect("plan");
    let mut ws = plan.container(Role::Workspace).expect("ws").clone();
    assert!(!crate::plan::workspace::can_remount(&ws));
    for (caps, can) in [
        (&["NET_ADMIN"][..], false),
        (&["cap_sys_admin"], true),
        (&["SYS_ADMIN"], true),
        (&["all"], true),
    ] {
        ws.cap_add = caps.iter().map(|c| c.to_string()).collect();
        assert_eq!(crate::plan::workspace::can_remount(&ws), can, "{caps:?}");
    }
}

#[test]
fn what_a_feature_asks_of_the_workspace_needs_consent_and_never_reaches_the_agent() {
    let mut i = input();
    i.feature_settings = vec![crate::plan::input::FeatureSettings {
        id: "ghcr.io/devcontainers/features/docker-in-docker:2".into(),
        privileged: true,
        cap_add: vec!["sys_ptrace".into()],
        security_opt: vec!["seccomp=unconfined".into()],
        ..Default::default()
    }];
    let e = build(&i).expect_err("consent").to_string();
    assert!(
        e.contains("feature \"ghcr.io/devcontainers/features/docker-in-docker:2\" privileged")
            && e.contains("capAdd sys_ptrace")
            && e.contains("securityOpt seccomp=unconfined"),
        "{e}"
    );
    i.trust = Some("--trust".into());
    let plan = build(&i).expect("plan");
    let ws = plan.container(Role::Workspace).expect("ws");
    assert!(ws.extra.privileged);
    assert!(
        ws.cap_add.contains(&"SYS_PTRACE".to_string()),
        "{:?}",
        ws.cap_add
    );
    assert!(ws.security_opt.contains(&"seccomp=unconfined".to_string()));
    let agent = plan.container(Role::Agent).expect("agent");
    assert_eq!(agent.extra, Extras::default());
    assert!(agent.cap_add.is_empty());
    assert_eq!(plan.trust.applied.len(), 3, "{:?}", plan.trust.applied);
}

#[test]
fn a_features_mounts_entrypoint_and_commands_reach_the_workspace_alone() {
    use serde_json::json;
    let mut i = input();
    i.devcontainer.mounts = Some(vec![json!("source=own,target=/data,type=volume")]);
    i.devcontainer.post_create_command = Some(json!("own"));
    i.feature_settings = vec![
        crate::plan::input::FeatureSettings {
            id: "./dind".into(),
            mounts: vec![
                json!({"source": "dind-${devcontainerId}", "target": "/var/lib/docker", "type": "volume"}),
                json!("source=shadowed,target=/data,type=volume"),
            ],
            entrypoint: Some("/usr/local/share/dind-init.sh".into()),
            lifecycle: [("postCreateCommand".to_string(), json!("feature-create"))].into(),
            ..Default::default()
        },
        crate::plan::input::FeatureSettings {
            id: "./b".into(),
            entrypoint: Some("/usr/local/share/b-init.sh".into()),
            ..Default::default()
        },
    ];
    let plan = build(&i).expect("plan");
    let ws = plan.container(Role::Workspace).expect("ws");
    let id = crate::plan::mounts::devcontainer_id(i.name.as_str());
    assert_eq!(id.len(), 52);
    let repo_mounts: Vec<(&str, &str)> = ws
        .mounts
        .iter()
        .filter(|m| m.target == "/var/lib/docker" || m.target == "/data")
        .map(|m| (m.source.as_str(), m.target.as_str()))
        .collect();
    // The config's mount of /data replaces the feature's; the id is the pod's.
    let dind = format!("dind-{id}");
    assert_eq!(
        repo_mounts,
        [(dind.as_str(), "/var/lib/docker"), ("own", "/data")]
    );
    // The entrypoints run in order before the command, in the workspace's wrapper.
    let script = &ws.command[2];
    let a = script.find("/usr/local/share/dind-init.sh").expect("a");
    let b = script.find("/usr/local/share/b-init.sh").expect("b");
    assert!(
        a < b && b < script.find("exec \"$@\"").expect("exec"),
        "{script}"
    );
    let names: Vec<String> = plan
        .lifecycle
        .create
        .iter()
        .map(crate::plan::LifecycleStep::name)
        .collect();
    assert_eq!(
        names,
        ["feature \"./dind\" postCreateCommand", "postCreateCommand"]
    );
    // The agent: none of it.
    let agent = plan.container(Role::Agent).expect("agent");
    assert!(
        !agent.command.join(" ").contains("init.sh"),
        "{:?}",
        agent.command
    );
    assert!(
        agent
            .mounts
            .iter()
            .all(|m| m.target != "/var/lib/docker" && m.target != "/data"),
        "{:?}",
        agent.mounts
    );
    // A feature's host bind needs consent, named; one hiding the workspace is refused.
    i.feature_settings[1].mounts = vec![json!("type=bind,source=/srv,target=/srv")];
    let e = build(&i).expect_err("consent").to_string();
    assert!(
        e.contains("feature \"./b\" mounts[0] binds /srv at /srv") && e.contains("--trust"),
        "{e}"
    );
    i.trust = Some("--trust".into());
    let plan = build(&i).expect("plan");
    assert!(
        plan.trust
            .applied
            .iter()
            .any(|c| c.to_string().contains("feature \"./b\" mounts[0]")),
        "{:?}",
        plan.trust.applied
    );
    let folder = crate::plan::folders::Folders::new(&i).expect("folders");
    i.feature_settings[1].mounts =
        vec![json!({"source": "x", "target": folder.workspace_folder, "type": "volume"})];
    let e = build(&i).expect_err("hides").to_string();
    assert!(
        e.contains("feature \"./b\" mounts[0]") && e.contains("hide"),
        "{e}"
    );
}
