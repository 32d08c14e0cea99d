//! The pod's published ports: `forwardPorts`, `appPort` and runArgs `-p`, all on the
//! host's loopback (choosing free host ports is `up`'s, at apply time).

use super::error::PlanError;
use super::input::PlanInput;
use super::run_args::RunArgs;
use super::spec::PortSpec;

/// The ports of `forwardPorts` and `appPort`. Entries naming another host (Compose
/// services) are skipped with a warning.
pub(crate) fn parse_ports(
    forward: &[serde_json::Value],
    app: Option<&serde_json::Value>,
    warnings: &mut Vec<String>,
) -> Result<Vec<PortSpec>, String> {
    let mut out: Vec<PortSpec> = Vec::new();
    let mut push = |container_port: u16, host_port: Option<u16>| {
        if !out.iter().any(|o| o.container_port == container_port) {
            out.push(PortSpec {
                container_port,
                host_port,
                protocol: "tcp".into(),
            });
        }
    };
    for f in forward {
        match f {
            serde_json::Value::Number(n) => push(port(&n.to_string())?, None),
            serde_json::Value::String(s) => match s.split_once(':') {
                Some(("localhost" | "127.0.0.1", p)) => push(port(p)?, None),
                Some(_) => warnings.push(format!(
                    "forwardPorts entry {s:?} names another host (a Compose service); it is skipped"
                )),
                None => push(port(s)?, None),
            },
            _ => return Err("forwardPorts entries are numbers or \"host:port\" strings".into()),
        }
    }
    let apps: Vec<serde_json::Value> = match app {
        None => vec![],
        Some(serde_json::Value::Array(a)) => a.clone(),
        Some(v) => vec![v.clone()],
    };
    for a in apps {
        let text = match &a {
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::String(s) => s.clone(),
            _ => return Err("appPort entries are numbers or \"HOST:CONTAINER\" strings".into()),
        };
        match text.split_once(':') {
            Some((h, c)) => {
                let host = port(h)?;
                push(port(c)?, Some(host));
            }
            None => push(port(&text)?, None),
        }
    }
    Ok(out)
}

fn port(s: &str) -> Result<u16, String> {
    s.parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("{s:?} is not a port number"))
}

/// The pod's ports: the configuration's, then runArgs' `-p` not already published.
pub(crate) fn pod_ports(
    input: &PlanInput,
    ra: &RunArgs,
    warnings: &mut Vec<String>,
) -> Result<Vec<PortSpec>, PlanError> {
    let dc = &input.devcontainer;
    let mut ports = parse_ports(
        dc.forward_ports.as_deref().unwrap_or_default(),
        dc.app_port.as_ref(),
        warnings,
    )
    .map_err(|reason| {
        let key = if reason.starts_with("appPort") {
            "appPort"
        } else {
            "forwardPorts"
        };
        input.bad_property(key, reason)
    })?;
    for p in &ra.ports {
        if !ports
            .iter()
            .any(|q| q.container_port == p.container_port && q.protocol == p.protocol)
        {
            ports.push(p.clone());
        }
    }
    // devaipod's own ports stay inside the pod: opencode's API and the agent's proxy
    // (its credential routes add the user's keys) are for the pod alone.
    let reserved = [
        super::AGENT_PORT,
        super::paths::PROXY_PORT,
        super::gator::PORT,
        super::gator::SERVER_PORT,
    ];
    if let Some(p) = ports.iter().find(|p| reserved.contains(&p.container_port)) {
        return Err(input.bad_property("forwardPorts", format!(
            "port {} is devaipod's own inside the pod (4096 the agent's API, 4097 its proxy, 8765 service-gator's relay, 8766 service-gator) and is never published; forward another port",
            p.container_port
        )));
    }
    Ok(ports)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::plan::tests_support::input;

    #[test]
    fn devaipods_own_ports_are_never_published() {
        for port in [4096, 4097, 8765, 8766] {
            let mut i = input();
            i.devcontainer.forward_ports = Some(vec![json!(port)]);
            let e = pod_ports(&i, &RunArgs::default(), &mut Vec::new()).expect_err("reserved");
            assert!(e.to_string().contains("devaipod's own"), "{e}");
        }
    }

    #[test]
    fn run_args_ports_join_unless_already_published() {
        let mut i = input();
        i.devcontainer.forward_ports = Some(vec![json!(3000)]);
        let p = |container_port, protocol: &str| PortSpec {
            container_port,
            host_port: Some(1),
            protocol: protocol.into(),
        };
        let ra = RunArgs {
            ports: vec![p(3000, "tcp"), p(3000, "udp"), p(4000, "tcp")],
            ..Default::default()
        };
        let mut w = Vec::new();
        let got: Vec<(u16, Option<u16>, String)> = pod_ports(&i, &ra, &mut w)
            .expect("ports")
            .into_iter()
            .map(|p| (p.container_port, p.host_port, p.protocol))
            .collect();
        assert_eq!(
            got,
            [
                (3000, None, "tcp".into()),
                (3000, Some(1), "udp".into()),
                (4000, Some(1), "tcp".into())
            ]
        );
        i.devcontainer.app_port = Some(json!(true));
        let e = pod_ports(&i, &ra, &mut w).expect_err("bad appPort");
        assert!(e.to_string().contains("appPort entries"), "{e}");
    }
}
