//! The workspace's resources from `hostRequirements` and runArgs `--gpus`: CPU and
//! memory limits, and GPUs, given only through the host's CDI devices.

use super::error::PlanError;
use super::input::PlanInput;
use super::run_args::RunArgs;

/// Limits of the workspace from `hostRequirements`: (cpus, memory bytes). Sizes as the
/// spec writes them (`4gb`, `512mb`, plain bytes); `gpu` is reported, not applied.
pub(crate) fn host_requirements(
    v: &serde_json::Value,
    cdi_gpu: Option<&str>,
    devices: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> Result<(Option<f64>, Option<i64>), String> {
    let cpus = match v.get("cpus") {
        None => None,
        Some(c) => Some(
            c.as_f64()
                .filter(|c| *c > 0.0)
                .ok_or("hostRequirements.cpus must be a positive number")?,
        ),
    };
    let memory = v.get("memory").map(memory).transpose()?;
    if v.get("storage").is_some() {
        warnings.push(
            "hostRequirements.storage is reported only: Podman cannot reserve disk for a container"
                .into(),
        );
    }
    if let Some(gpu) = v
        .get("gpu")
        .filter(|g| !matches!(g, serde_json::Value::Bool(false)))
    {
        let optional = gpu == &serde_json::Value::String("optional".into());
        match cdi_gpu {
            // The host describes its GPUs with a CDI specification: all of them.
            Some(device) => devices.push(device.to_string()),
            None if optional => warnings.push(
                "hostRequirements.gpu is optional and this host has no CDI GPU specification (/etc/cdi, /var/run/cdi): the workspace gets no GPU".into(),
            ),
            None => return Err("hostRequirements.gpu asks for a GPU, and this host has no CDI GPU specification in /etc/cdi or /var/run/cdi (generate one, e.g. `nvidia-ctk cdi generate`)".into()),
        }
    }
    Ok((cpus, memory))
}

/// `hostRequirements.memory`: a string such as `4gb`.
fn memory(m: &serde_json::Value) -> Result<i64, String> {
    let text = m
        .as_str()
        .ok_or("hostRequirements.memory must be a string such as \"4gb\"")?;
    let digits: String = text.chars().take_while(|c| c.is_ascii_digit()).collect();
    let unit = text[digits.len()..].to_ascii_lowercase();
    let mult: i64 = match unit.as_str() {
        "" => 1,
        "kb" => 1 << 10,
        "mb" => 1 << 20,
        "gb" => 1 << 30,
        "tb" => 1 << 40,
        _ => {
            return Err(format!(
                "hostRequirements.memory {text:?}: use a number with kb, mb, gb or tb"
            ));
        }
    };
    let n: i64 = digits
        .parse()
        .map_err(|_| format!("hostRequirements.memory {text:?} is not a size"))?;
    Ok(n.checked_mul(mult)
        .ok_or("hostRequirements.memory is too large")?)
}

/// The first GPU kind a CDI specification in `dirs` declares, as the device naming all
/// of its GPUs (`nvidia.com/gpu=all`).
pub(crate) fn cdi_gpu_in(specs: &[String]) -> Option<String> {
    specs.iter().find_map(|text| {
        text.lines().find_map(|l| {
            let l = l.trim().trim_start_matches('"');
            let rest = l.strip_prefix("kind")?.trim_start_matches('"').trim_start();
            let kind = rest
                .strip_prefix(':')?
                .trim()
                .trim_end_matches(',')
                .trim_matches(|c| c == '"' || c == '\'');
            kind.ends_with("/gpu").then(|| format!("{kind}=all"))
        })
    })
}

/// What the workspace gets of the host's resources.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Resources {
    pub cpus: Option<f64>,
    /// Bytes.
    pub memory: Option<i64>,
    /// CDI devices (GPUs).
    pub devices: Vec<String>,
    pub warnings: Vec<String>,
}

impl Resources {
    /// Reads `hostRequirements`.
    pub(crate) fn new(input: &PlanInput) -> Result<Self, PlanError> {
        let mut out = Resources::default();
        if let Some(v) = &input.devcontainer.host_requirements {
            (out.cpus, out.memory) = host_requirements(
                v,
                input.cdi_gpu.as_deref(),
                &mut out.devices,
                &mut out.warnings,
            )
            .map_err(|reason| {
                // "hostRequirements.memory ..." names its key; the rest are the object's.
                let key = reason
                    .split_whitespace()
                    .next()
                    .filter(|w| w.starts_with("hostRequirements."))
                    .unwrap_or("hostRequirements")
                    .to_string();
                input.bad_property(&key, reason)
            })?;
        }
        Ok(out)
    }

    /// runArgs `--gpus`: the host's CDI GPUs, or a refusal without them.
    pub(crate) fn add_run_args_gpus(
        &mut self,
        input: &PlanInput,
        ra: &RunArgs,
    ) -> Result<(), PlanError> {
        let Some(g) = &ra.gpus else {
            return Ok(());
        };
        match &input.cdi_gpu {
            Some(d) => {
                self.devices.push(d.clone());
                Ok(())
            }
            None => Err(input.bad_property("runArgs", format!(
                "runArgs: --gpus {g}: devaipod gives containers GPUs only through CDI devices, and this host has no CDI GPU specification in /etc/cdi or /var/run/cdi"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn host_requirements_sizes_and_refusals() {
        for (v, want) in [
            (json!({}), Ok((None, None))),
            (
                json!({"cpus": 2, "memory": "4gb"}),
                Ok((Some(2.0), Some(4 << 30))),
            ),
            (json!({"memory": "512MB"}), Ok((None, Some(512 << 20)))),
            (json!({"memory": "1024"}), Ok((None, Some(1024)))),
            (json!({"cpus": 0}), Err("positive number")),
            (json!({"memory": 4}), Err("must be a string")),
            (json!({"memory": "4 gb"}), Err("use a number with kb")),
            (json!({"memory": "gb"}), Err("is not a size")),
            (json!({"memory": "99999999999tb"}), Err("too large")),
        ] {
            let (mut d, mut w) = (Vec::new(), Vec::new());
            match (host_requirements(&v, None, &mut d, &mut w), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{v}"),
                (Err(e), Err(want)) => assert!(e.contains(want), "{v}: {e}"),
                (got, want) => panic!("{v}: {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn storage_is_reported_and_gpus_come_from_cdi_only() {
        let (mut d, mut w) = (Vec::new(), Vec::new());
        host_requirements(
            &json!({"storage": "1tb", "gpu": false}),
            None,
            &mut d,
            &mut w,
        )
        .expect("valid");
        assert!(d.is_empty());
        assert_eq!(w.len(), 1, "{w:?}");
        host_requirements(&json!({"gpu": true}), Some("x.com/gpu=all"), &mut d, &mut w)
            .expect("cdi");
        assert_eq!(d, ["x.com/gpu=all"]);
        let mut i = crate::plan::tests_support::input();
        let ra = RunArgs {
            gpus: Some("all".into()),
            ..Default::default()
        };
        let mut r = Resources::new(&i).expect("none");
        assert!(r.add_run_args_gpus(&i, &ra).is_err());
        i.cdi_gpu = Some("x.com/gpu=all".into());
        r.add_run_args_gpus(&i, &ra).expect("cdi");
        assert_eq!(r.devices, ["x.com/gpu=all"]);
    }
}
