//! Consent: the repo settings that widen the workspace's access to the host, and why.
//! None applies without `--trust` (or `[repos] trust`); each one consented to is listed
//! in the plan (`trust.applied`). They never reach the agent or the gator.

use std::fmt;

use serde::{Serialize, Serializer};

use super::error::PlanError;
use super::input::PlanInput;
use super::run_args::{self, RunArgs};
use super::spec::TrustPlan;

/// Where a widening setting is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A devcontainer.json property (`privileged`, `capAdd`, `securityOpt`).
    Property,
    /// A `runArgs` flag.
    RunArgs,
    /// The same property of a feature's devcontainer-feature.json (its id as the config
    /// names it).
    Feature(String),
}

impl Origin {
    /// The setting's name where it is written: the property, or the runArgs flag.
    fn name(&self, property: &str, flag: &str) -> String {
        match self {
            Origin::Property => property.to_string(),
            Origin::RunArgs => format!("runArgs {flag}"),
            Origin::Feature(id) => format!("feature {id:?} {property}"),
        }
    }
}

/// Where a host bind comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BindFrom {
    /// The entry `mounts[index]` of devcontainer.json.
    Mounts { index: usize },
    /// The entry `mounts[index]` of a feature's devcontainer-feature.json (its id as the
    /// config names it).
    Feature { id: String, index: usize },
    /// A `runArgs` flag (`-v` or `--mount`).
    RunArgs { flag: &'static str },
}

/// One repo setting that widens the workspace's access, and only with consent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Consent {
    /// A `containerEnv` value taken from the host's environment (`${localEnv:..}`).
    HostEnv { name: String },
    /// A host path bind-mounted into the workspace.
    HostBind {
        from: BindFrom,
        source: String,
        target: String,
    },
    /// A privileged workspace.
    Privileged { from: Origin },
    /// An added capability, as the repo wrote it.
    CapAdd { from: Origin, cap: String },
    /// A security option (already checked to be one devaipod can apply).
    SecurityOpt { from: Origin, option: String },
    /// A host device (`runArgs --device`).
    Device { device: String },
    /// `runArgs --dns`/`--add-host`: they apply to the whole pod's name lookups, so to
    /// the names the agent's proxy resolves (an allowed name could be sent elsewhere).
    PodNames { flag: String, value: String },
}

impl Consent {
    /// Whether it bind-mounts a host path.
    pub(crate) fn is_bind(&self) -> bool {
        matches!(self, Consent::HostBind { .. })
    }

    /// The setting as the refusal without consent names it.
    pub(crate) fn request(&self) -> String {
        match self {
            Consent::HostEnv { name } => name.clone(),
            Consent::HostBind {
                from: BindFrom::Mounts { index },
                source,
                target,
            } => format!("mounts[{index}] binds {source} at {target}"),
            Consent::HostBind {
                from: BindFrom::Feature { id, index },
                source,
                target,
            } => format!("feature {id:?} mounts[{index}] binds {source} at {target}"),
            Consent::HostBind {
                from: BindFrom::RunArgs { flag },
                source,
                target,
            } => format!("runArgs {flag} binds {source} at {target}"),
            Consent::Privileged { from } => from.name("privileged", "--privileged"),
            Consent::CapAdd { from, cap } => format!("{} {cap}", from.name("capAdd", "--cap-add")),
            Consent::SecurityOpt { from, option } => {
                format!("{} {option}", from.name("securityOpt", "--security-opt"))
            }
            Consent::Device { device } => format!("runArgs --device {device}"),
            Consent::PodNames { flag, value } => format!("runArgs {flag} {value}"),
        }
    }
}

/// How `trust.applied` prints it.
impl fmt::Display for Consent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Consent::HostEnv { name } => {
                write!(f, "{name} from the host environment (workspace only)")
            }
            Consent::HostBind {
                from: BindFrom::RunArgs { .. },
                source,
                target,
            } => write!(f, "runArgs binds {source} at {target}"),
            Consent::HostBind { .. } => f.write_str(&self.request()),
            Consent::PodNames { .. } => write!(
                f,
                "{} (the whole pod: the agent's proxy resolves names with it)",
                self.request()
            ),
            _ => write!(f, "{} (workspace only)", self.request()),
        }
    }
}

impl Serialize for Consent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The host environment values of `containerEnv`: refused without consent.
pub(crate) fn host_env(input: &PlanInput) -> Result<Vec<Consent>, PlanError> {
    if !input.container_env_from_host.is_empty() && !input.trusted() {
        return Err(PlanError::HostEnvNeedsTrust {
            path: input.config_file(),
            names: input.container_env_from_host.join(", "),
        });
    }
    Ok(input
        .container_env_from_host
        .iter()
        .map(|name| Consent::HostEnv { name: name.clone() })
        .collect())
}

/// The widening settings of runArgs (binds included), then of `privileged`, `capAdd`
/// and `securityOpt`. `Err` names a security option devaipod cannot apply.
pub(crate) fn widening(input: &PlanInput, ra: &RunArgs) -> Result<Vec<Consent>, PlanError> {
    let dc = &input.devcontainer;
    let mut out = ra.needs_trust.clone();
    if dc.privileged == Some(true) {
        out.push(Consent::Privileged {
            from: Origin::Property,
        });
    }
    for c in dc.cap_add.iter().flatten() {
        out.push(Consent::CapAdd {
            from: Origin::Property,
            cap: c.clone(),
        });
    }
    for o in dc.security_opt.iter().flatten() {
        run_args::security_opt_known(o)
            .map_err(|e| input.bad_property("securityOpt", format!("securityOpt: {e}")))?;
        out.push(Consent::SecurityOpt {
            from: Origin::Property,
            option: o.clone(),
        });
    }
    for f in &input.feature_settings {
        let from = Origin::Feature(f.id.clone());
        if f.privileged {
            out.push(Consent::Privileged { from: from.clone() });
        }
        for c in &f.cap_add {
            out.push(Consent::CapAdd {
                from: from.clone(),
                cap: c.clone(),
            });
        }
        for o in &f.security_opt {
            run_args::security_opt_known(o).map_err(|e| {
                input.bad_property("", format!("feature {:?} securityOpt: {e}", f.id))
            })?;
            out.push(Consent::SecurityOpt {
                from: from.clone(),
                option: o.clone(),
            });
        }
    }
    Ok(out)
}

/// Refuses widening settings without consent, naming them all.
pub(crate) fn require(input: &PlanInput, widening: &[Consent]) -> Result<(), PlanError> {
    if widening.is_empty() || input.trusted() {
        return Ok(());
    }
    Err(PlanError::NeedsTrust {
        path: input.config_file(),
        what: widening
            .iter()
            .map(Consent::request)
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// What the consent let through: host environment, then host binds, then the rest.
pub(crate) fn trust_plan(
    input: &PlanInput,
    host_env: Vec<Consent>,
    mount_binds: Vec<Consent>,
    widening: Vec<Consent>,
) -> TrustPlan {
    let (binds, rest): (Vec<_>, Vec<_>) = widening.into_iter().partition(Consent::is_bind);
    TrustPlan {
        granted_by: input.trust.clone(),
        applied: host_env
            .into_iter()
            .chain(mount_binds)
            .chain(binds)
            .chain(rest)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::tests_support::input;

    fn bind(from: BindFrom) -> Consent {
        Consent::HostBind {
            from,
            source: "/h".into(),
            target: "/c".into(),
        }
    }

    #[test]
    fn each_consent_reads_as_before_when_asked_for_and_when_applied() {
        for (consent, request, applied) in [
            (
                Consent::HostEnv { name: "X".into() },
                "X",
                "X from the host environment (workspace only)",
            ),
            (
                bind(BindFrom::Mounts { index: 2 }),
                "mounts[2] binds /h at /c",
                "mounts[2] binds /h at /c",
            ),
            (
                bind(BindFrom::RunArgs { flag: "-v" }),
                "runArgs -v binds /h at /c",
                "runArgs binds /h at /c",
            ),
            (
                bind(BindFrom::RunArgs { flag: "--mount" }),
                "runArgs --mount binds /h at /c",
                "runArgs binds /h at /c",
            ),
            (
                Consent::Privileged {
                    from: Origin::Property,
                },
                "privileged",
                "privileged (workspace only)",
            ),
            (
                Consent::Privileged {
                    from: Origin::RunArgs,
                },
                "runArgs --privileged",
                "runArgs --privileged (workspace only)",
            ),
            (
                Consent::CapAdd {
                    from: Origin::Property,
                    cap: "sys_admin".into(),
                },
                "capAdd sys_admin",
                "capAdd sys_admin (workspace only)",
            ),
            (
                Consent::CapAdd {
                    from: Origin::RunArgs,
                    cap: "NET_RAW".into(),
                },
                "runArgs --cap-add NET_RAW",
                "runArgs --cap-add NET_RAW (workspace only)",
            ),
            (
                Consent::SecurityOpt {
                    from: Origin::Property,
                    option: "label=disable".into(),
                },
                "securityOpt label=disable",
                "securityOpt label=disable (workspace only)",
            ),
            (
                Consent::SecurityOpt {
                    from: Origin::RunArgs,
                    option: "label=disable".into(),
                },
                "runArgs --security-opt label=disable",
                "runArgs --security-opt label=disable (workspace only)",
            ),
            (
                Consent::Device {
                    device: "/dev/fuse".into(),
                },
                "runArgs --device /dev/fuse",
                "runArgs --device /dev/fuse (workspace only)",
            ),
        ] {
            assert_eq!(consent.request(), request);
            assert_eq!(consent.to_string(), applied);
            assert_eq!(
                serde_json::to_value(&consent).expect("json"),
                serde_json::json!(applied)
            );
            assert_eq!(consent.is_bind(), request.contains(" binds "));
        }
    }

    #[test]
    fn nothing_widens_without_consent() {
        let mut i = input();
        i.container_env_from_host = vec!["A".into(), "B".into()];
        let e = host_env(&i).expect_err("host env").to_string();
        assert!(e.contains("A, B take values from your host"), "{e}");
        let wide = [Consent::Device {
            device: "/dev/kvm".into(),
        }];
        let e = require(&i, &wide).expect_err("device").to_string();
        assert!(e.contains("runArgs --device /dev/kvm widen(s)"), "{e}");
        assert_eq!(require(&i, &[]), Ok(()));
        i.trust = Some("--trust".into());
        assert_eq!(host_env(&i).expect("trusted").len(), 2);
        assert_eq!(require(&i, &wide), Ok(()));
    }

    #[test]
    fn unknown_security_options_are_refused_even_with_consent() {
        let mut i = input();
        i.trust = Some("--trust".into());
        i.devcontainer.security_opt = Some(vec!["systempaths=unconfined".into()]);
        let e = widening(&i, &RunArgs::default()).expect_err("unknown");
        assert!(
            e.to_string().contains("securityOpt: security option"),
            "{e}"
        );
    }

    #[test]
    fn applied_lists_host_env_then_binds_then_the_rest() {
        let mut i = input();
        i.trust = Some("--trust".into());
        let t = trust_plan(
            &i,
            vec![Consent::HostEnv { name: "E".into() }],
            vec![bind(BindFrom::Mounts { index: 0 })],
            vec![
                Consent::Privileged {
                    from: Origin::RunArgs,
                },
                bind(BindFrom::RunArgs { flag: "-v" }),
            ],
        );
        let got: Vec<String> = t.applied.iter().map(ToString::to_string).collect();
        assert_eq!(
            got,
            [
                "E from the host environment (workspace only)",
                "mounts[0] binds /h at /c",
                "runArgs binds /h at /c",
                "runArgs --privileged (workspace only)",
            ]
        );
        assert_eq!(t.granted_by.as_deref(), Some("--trust"));
    }
}
