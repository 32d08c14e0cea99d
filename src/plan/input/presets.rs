//! Built-in credential routes ("presets") for the LLM providers opencode ships that
//! authenticate with one static header. A preset is an `[agent.credentials.ID]` table
//! that devaipod writes itself: when one of its variables is set in devaipod's
//! environment at `up` (or `[agent] providers` names it), the proxy holds that key and
//! opencode's provider is pointed at the route, with no configuration at all.
//!
//! Pure: the environment is a lookup the caller passes in.

use std::collections::BTreeMap;

use super::UserSecret;
use super::net::CredentialInput;

/// One provider's preset: what `[agent.credentials.ID]` would say for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Preset {
    /// The opencode provider id (models.dev's).
    pub id: &'static str,
    /// The provider's name, for people.
    pub name: &'static str,
    /// The variables that hold its key, in opencode's order: the first one set wins.
    pub env: &'static [&'static str],
    /// Variables that point the provider's SDKs at another endpoint (a gateway): when
    /// one is set, the key may be that endpoint's, so the environment alone does not
    /// make the preset.
    pub base_env: &'static [&'static str],
    /// What opencode's SDK for the provider puts its paths after.
    pub base_url: &'static str,
    pub header: &'static str,
    pub prefix: &'static str,
    /// The paths below `base_url` the route forwards: the model API opencode's SDK
    /// calls (a prefix each, up to a `/` or `:`), not the account, file or key
    /// management the same key may reach.
    pub paths: &'static [&'static str],
    /// The model `up` uses when this is the only preset and no model is chosen
    /// (an opencode model id, `ID/MODEL`, in opencode 1.18.34's model list).
    pub model: &'static str,
}

/// The presets, by provider id. Keep docs/agent.md's table in step.
pub(crate) const PRESETS: &[Preset] = &[
    Preset {
        id: "anthropic",
        name: "Anthropic",
        env: &["ANTHROPIC_API_KEY"],
        base_env: &["ANTHROPIC_BASE_URL"],
        base_url: "https://api.anthropic.com/v1",
        header: "x-api-key",
        prefix: "",
        paths: &["messages", "models"],
        model: "anthropic/claude-sonnet-4-5",
    },
    Preset {
        id: "openai",
        name: "OpenAI",
        env: &["OPENAI_API_KEY"],
        base_env: &["OPENAI_BASE_URL", "OPENAI_API_BASE"],
        base_url: "https://api.openai.com/v1",
        header: "authorization",
        prefix: "Bearer ",
        paths: &[
            "responses",
            "chat/completions",
            "completions",
            "embeddings",
            "models",
        ],
        model: "openai/gpt-5",
    },
    Preset {
        id: "openrouter",
        name: "OpenRouter",
        env: &["OPENROUTER_API_KEY"],
        base_env: &[],
        base_url: "https://openrouter.ai/api/v1",
        header: "authorization",
        prefix: "Bearer ",
        paths: &[
            "chat/completions",
            "completions",
            "responses",
            "embeddings",
            "models",
        ],
        model: "openrouter/anthropic/claude-sonnet-4.5",
    },
    Preset {
        id: "groq",
        name: "Groq",
        env: &["GROQ_API_KEY"],
        base_env: &[],
        base_url: "https://api.groq.com/openai/v1",
        header: "authorization",
        prefix: "Bearer ",
        paths: &["chat/completions", "responses", "models"],
        model: "groq/openai/gpt-oss-120b",
    },
    Preset {
        id: "mistral",
        name: "Mistral",
        env: &["MISTRAL_API_KEY"],
        base_env: &[],
        base_url: "https://api.mistral.ai/v1",
        header: "authorization",
        prefix: "Bearer ",
        paths: &[
            "chat/completions",
            "fim/completions",
            "embeddings",
            "models",
        ],
        model: "mistral/devstral-medium-latest",
    },
    Preset {
        id: "deepseek",
        name: "DeepSeek",
        env: &["DEEPSEEK_API_KEY"],
        base_env: &[],
        base_url: "https://api.deepseek.com",
        header: "authorization",
        prefix: "Bearer ",
        paths: &[
            "chat/completions",
            "completions",
            "beta/completions",
            "beta/chat/completions",
            "models",
        ],
        model: "deepseek/deepseek-v4-pro",
    },
    Preset {
        id: "xai",
        name: "xAI",
        env: &["XAI_API_KEY"],
        base_env: &[],
        base_url: "https://api.x.ai/v1",
        header: "authorization",
        prefix: "Bearer ",
        paths: &[
            "chat/completions",
            "responses",
            "messages",
            "models",
            "language-models",
        ],
        model: "xai/grok-4.5",
    },
    Preset {
        id: "google",
        name: "Google Gemini (API key)",
        env: &[
            "GOOGLE_API_KEY",
            "GOOGLE_GENERATIVE_AI_API_KEY",
            "GEMINI_API_KEY",
        ],
        base_env: &["GOOGLE_GEMINI_BASE_URL"],
        base_url: "https://generativelanguage.googleapis.com/v1beta",
        header: "x-goog-api-key",
        prefix: "",
        paths: &["models"],
        model: "google/gemini-2.5-pro",
    },
];

/// The first of `names` set, and not empty, in the environment `env` looks up.
fn first_set(
    names: &'static [&'static str],
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<&'static str> {
    names
        .iter()
        .find(|v| env(v).is_some_and(|x| !x.is_empty()))
        .copied()
}

impl Preset {
    /// The variable that holds this preset's key in `env` (the first set and not
    /// empty, in opencode's order).
    pub(crate) fn variable(&self, env: &dyn Fn(&str) -> Option<String>) -> Option<&'static str> {
        first_set(self.env, env)
    }
}

/// The preset of provider `id`.
pub(crate) fn by_id(id: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.id == id)
}

/// Whether `s` starts as the providers' API keys do (`sk-`, `sk_`, `gsk_`, `xai-`,
/// `AIza`): text written where a name belongs that must not be echoed or used as one.
pub(crate) fn looks_like_a_key(s: &str) -> bool {
    ["sk-", "sk_", "gsk_", "xai-", "AIza"]
        .iter()
        .any(|p| s.starts_with(p))
}

/// What admin key `key` is, by its documented prefix: keys that manage an
/// organization, which no agent needs.
fn admin_key(key: &str) -> Option<&'static str> {
    if key.starts_with("sk-ant-admin") {
        Some("an Anthropic Admin API key")
    } else if key.starts_with("sk-admin-") {
        Some("an OpenAI admin key")
    } else {
        None
    }
}

/// The preset ids, for messages: `anthropic, openai, ...`.
pub(crate) fn ids() -> String {
    PRESETS.iter().map(|p| p.id).collect::<Vec<_>>().join(", ")
}

/// `[agent] providers` entry, checked: a preset and, optionally, the podman secret
/// that holds its key instead of devaipod's environment (`ID=SECRET`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NamedPreset {
    pub id: String,
    pub existing: Option<String>,
    /// Where it is written, for messages (`FILE:LINE:COL`).
    pub at: String,
}

/// A provider's opencode settings that the user wrote by hand in `[agent.opencode]`
/// and devaipod would set for a credential route (`options.baseURL`, `options.apiKey`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HandSetting {
    pub provider: String,
    /// `provider.ID.options.KEY`.
    pub setting: String,
    /// Where it is written (`FILE:LINE:COL`).
    pub at: String,
}

/// What chooses the presets of a pod.
#[derive(Debug, Clone, Default)]
pub(crate) struct Choice<'a> {
    /// `[agent] providers`: `None` when unset (the environment decides), `Some(&[])`
    /// for none at all.
    pub named: Option<&'a [NamedPreset]>,
    /// The provider ids of `[agent.credentials.*]`: these win over a preset.
    pub explicit: &'a [String],
    /// `[agent.opencode]` settings of providers configured by hand.
    pub hand: &'a [HandSetting],
    /// The variables of `[agent] secrets` (inside the agent).
    pub agent_secrets: &'a [String],
    /// Test-only base URLs by provider id (`DEVAIPOD_TEST_PRESET_URLS`).
    pub test_urls: Option<&'a BTreeMap<String, String>>,
}

/// A preset that is in use for a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Active {
    pub preset: &'static Preset,
    /// Why: `ANTHROPIC_API_KEY` (set in devaipod's environment), or
    /// `[agent] providers` (with a podman secret).
    pub origin: String,
    pub credential: CredentialInput,
}

/// A preset asked for: the preset, the variable set for it, and the podman secret
/// `[agent] providers` names for it with where.
type Wanted<'a> = (
    &'static Preset,
    Option<&'static str>,
    Option<(String, &'a str)>,
);

/// The presets in use: those `[agent] providers` names, or (when it is unset) those
/// whose variable is set and not empty, less the providers of `[agent.credentials]`.
/// `env` looks a variable up in devaipod's environment.
pub(crate) fn choose(
    c: &Choice<'_>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Vec<Active>, Vec<String>), String> {
    let mut notes = Vec::new();
    let mut wanted: Vec<Wanted<'_>> = Vec::new();
    match c.named {
        Some(named) => {
            for n in named {
                let p = by_id(&n.id).ok_or_else(|| {
                    format!(
                        "{}: [agent] providers: {:?} is no built-in preset ({}); configure other providers with [agent.credentials.ID]",
                        n.at,
                        n.id,
                        ids()
                    )
                })?;
                let variable = p.variable(env);
                if n.existing.is_none() && variable.is_none() {
                    return Err(format!(
                        "{}: [agent] providers names {}, but {} is not set in devaipod's environment: export {}, or name a podman secret that holds the key ({}=SECRET), or remove {} from providers",
                        n.at,
                        p.id,
                        or_list(p.env),
                        p.env[0],
                        p.id,
                        p.id
                    ));
                }
                let existing = n.existing.clone().map(|s| (s, n.at.as_str()));
                wanted.push((p, variable, existing));
            }
        }
        None => {
            for p in PRESETS {
                let Some(v) = p.variable(env) else { continue };
                if let Some(b) = first_set(p.base_env, env) {
                    notes.push(format!(
                        "{b} is set, so the key in {v} may be for that endpoint rather than {}: the {} preset is not used; configure [agent.credentials.{}] with that endpoint as base_url, or name the preset in [agent] providers to send the key to {}",
                        p.base_url, p.id, p.id, p.base_url
                    ));
                    continue;
                }
                wanted.push((p, Some(v), None));
            }
        }
    }
    let mut out = Vec::new();
    for (p, variable, existing) in wanted {
        if c.explicit.iter().any(|e| e == p.id) {
            continue;
        }
        let origin = match (&existing, variable) {
            (Some((s, at)), _) => format!("[agent] providers at {at} (podman secret {s})"),
            (None, Some(v)) => v.to_string(),
            (None, None) => unreachable!("checked above"),
        };
        let why = match (&existing, variable) {
            (Some((_, at)), _) => format!("[agent] providers (at {at}) names {}", p.id),
            (None, Some(v)) => format!(
                "{v} is set in devaipod's environment, which makes {} a built-in credential route (the proxy holds the key)",
                p.id
            ),
            (None, None) => unreachable!("checked above"),
        };
        if let Some(h) = c.hand.iter().find(|h| h.provider == p.id) {
            return Err(format!(
                "{}: [agent.opencode] {} configures provider {} by hand, but {why}: remove {} to use the preset, or set [agent] providers to the presets you want (without {})",
                h.at, h.setting, p.id, h.setting, p.id
            ));
        }
        // Any of the preset's variables inside the agent, not only the one used: the
        // key would be in the agent while the plan says the proxy holds it.
        if let Some(v) = p
            .env
            .iter()
            .find(|v| c.agent_secrets.iter().any(|s| s == *v))
        {
            return Err(format!(
                "[agent] secrets lists {v}, which puts it inside the agent, but {why}: remove {v} from [agent] secrets, or set [agent] providers to the presets you want (without {})",
                p.id
            ));
        }
        if let Some(v) = variable
            && let Some(kind) = env(v).as_deref().and_then(admin_key)
        {
            return Err(format!(
                "{v} holds {kind}, which manages the organization (members, projects, keys) rather than calling models: an agent could use it to mint keys of its own; give devaipod a normal API key for {} (the key is not shown)",
                p.id
            ));
        }
        let base_url = c
            .test_urls
            .and_then(|u| u.get(p.id))
            .cloned()
            .unwrap_or_else(|| p.base_url.to_string());
        out.push(Active {
            preset: p,
            origin,
            credential: CredentialInput {
                provider: p.id.to_string(),
                base_url,
                header: p.header.to_string(),
                prefix: p.prefix.to_string(),
                secret: UserSecret {
                    env_name: variable.unwrap_or(p.env[0]).to_string(),
                    existing: existing.map(|(s, _)| s),
                },
                preset: Some(p.id.to_string()),
            },
        });
    }
    Ok((out, notes))
}

/// The model for a pod with these presets and no model chosen: the preset's default
/// when there is exactly one; `Err` names the choices when there are several.
pub(crate) fn default_model(active: &[Active]) -> Result<Option<&'static str>, String> {
    match active {
        [] => Ok(None),
        [one] => Ok(Some(one.preset.model)),
        several => Err(format!(
            "several provider presets are in use ({}) and no model is chosen: pass --model (e.g. --model {}), set [agent] model, or set [agent] providers to one of them",
            several
                .iter()
                .map(|a| format!("{} from {}", a.preset.id, a.origin))
                .collect::<Vec<_>>()
                .join(", "),
            several[0].preset.model
        )),
    }
}

/// `A`, `A or B`, `A, B or C`.
fn or_list(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_string(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

/// Parses `DEVAIPOD_TEST_PRESET_URLS`: `ID=URL[,ID=URL...]`, each a preset and a base URL.
pub(crate) fn parse_test_urls(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, url) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?} is not ID=URL"))?;
        if by_id(id).is_none() {
            return Err(format!("{id:?} is no built-in preset ({})", ids()));
        }
        super::net::check_base_url(url)?;
        out.insert(id.to_string(), url.to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(set: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |v| {
            set.iter()
                .find(|(k, _)| *k == v)
                .map(|(_, x)| x.to_string())
        }
    }

    /// The presets [`choose`] picks, without its notes.
    fn pick(c: &Choice<'_>, env: &dyn Fn(&str) -> Option<String>) -> Result<Vec<Active>, String> {
        choose(c, env).map(|(a, _)| a)
    }

    #[test]
    fn a_base_url_variable_means_the_key_may_be_a_gateways() {
        let c = Choice::default();
        let (a, notes) = choose(
            &c,
            &env(&[
                ("ANTHROPIC_API_KEY", "k"),
                ("ANTHROPIC_BASE_URL", "https://gw.example/v1"),
            ]),
        )
        .expect("choose");
        assert!(a.is_empty());
        assert_eq!(
            notes,
            [
                "ANTHROPIC_BASE_URL is set, so the key in ANTHROPIC_API_KEY may be for that endpoint rather than https://api.anthropic.com/v1: the anthropic preset is not used; configure [agent.credentials.anthropic] with that endpoint as base_url, or name the preset in [agent] providers to send the key to https://api.anthropic.com/v1"
            ]
        );
        // Named, it is the user's choice.
        let named = [NamedPreset {
            id: "anthropic".into(),
            existing: None,
            at: "c.toml:2:14".into(),
        }];
        let c = Choice {
            named: Some(&named),
            ..Default::default()
        };
        let (a, notes) = choose(
            &c,
            &env(&[
                ("ANTHROPIC_API_KEY", "k"),
                ("ANTHROPIC_BASE_URL", "https://gw.example/v1"),
            ]),
        )
        .expect("named");
        assert_eq!((a.len(), notes.len()), (1, 0));
    }

    #[test]
    fn admin_keys_are_refused_without_being_shown() {
        let c = Choice::default();
        let e =
            pick(&c, &env(&[("ANTHROPIC_API_KEY", "sk-ant-admin01-SECRET")])).expect_err("admin");
        assert!(
            e.starts_with(
                "ANTHROPIC_API_KEY holds an Anthropic Admin API key, which manages the organization"
            ),
            "{e}"
        );
        assert!(!e.contains("SECRET"), "{e}");
        let e = pick(&c, &env(&[("OPENAI_API_KEY", "sk-admin-SECRET")])).expect_err("admin");
        assert!(
            e.contains("an OpenAI admin key") && !e.contains("SECRET"),
            "{e}"
        );
        assert!(pick(&c, &env(&[("OPENAI_API_KEY", "sk-proj-x")])).is_ok());
    }

    #[test]
    fn any_of_a_presets_variables_inside_the_agent_is_an_error() {
        let secrets = ["GEMINI_API_KEY".to_string()];
        let c = Choice {
            agent_secrets: &secrets,
            ..Default::default()
        };
        // GOOGLE_API_KEY feeds the route while GEMINI_API_KEY would be in the agent.
        let e = pick(&c, &env(&[("GOOGLE_API_KEY", "g")])).expect_err("secret");
        assert!(
            e.starts_with("[agent] secrets lists GEMINI_API_KEY, which puts it inside the agent"),
            "{e}"
        );
        let named = [NamedPreset {
            id: "google".into(),
            existing: Some("my-google".into()),
            at: "c.toml:2:14".into(),
        }];
        let c = Choice {
            named: Some(&named),
            agent_secrets: &secrets,
            ..Default::default()
        };
        assert!(pick(&c, &env(&[])).is_err(), "a podman secret too");
    }

    fn ids_of(a: &[Active]) -> Vec<&str> {
        a.iter().map(|a| a.preset.id).collect()
    }

    #[test]
    fn every_preset_is_a_valid_credential() {
        let mut seen = std::collections::HashSet::new();
        for p in PRESETS {
            assert!(seen.insert(p.id), "{} twice", p.id);
            super::super::net::check_provider_id(p.id).expect(p.id);
            super::super::net::check_base_url(p.base_url).expect(p.id);
            assert!(p.base_url.starts_with("https://"), "{}", p.id);
            super::super::net::check_header(p.header).expect(p.id);
            super::super::net::check_prefix(p.prefix).expect(p.id);
            assert!(!p.paths.is_empty(), "{}", p.id);
            for path in p.paths {
                assert!(
                    !path.starts_with('/')
                        && path.chars().all(
                            |c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')
                        ),
                    "{}: {path}",
                    p.id
                );
            }
            assert!(!p.env.is_empty(), "{}", p.id);
            assert!(
                p.model.starts_with(&format!("{}/", p.id)),
                "{}: {}",
                p.id,
                p.model
            );
        }
        for id in [
            "anthropic",
            "openai",
            "openrouter",
            "groq",
            "mistral",
            "deepseek",
            "xai",
            "google",
        ] {
            assert!(by_id(id).is_some(), "{id}");
        }
    }

    #[test]
    fn the_environment_chooses_when_providers_is_unset() {
        let c = Choice {
            ..Default::default()
        };
        assert!(pick(&c, &env(&[])).expect("none").is_empty());
        // An empty variable is not set.
        assert!(
            pick(&c, &env(&[("ANTHROPIC_API_KEY", "")]))
                .expect("empty")
                .is_empty()
        );
        let a = pick(&c, &env(&[("ANTHROPIC_API_KEY", "k")])).expect("one");
        assert_eq!(ids_of(&a), ["anthropic"]);
        assert_eq!(a[0].origin, "ANTHROPIC_API_KEY");
        assert_eq!(
            a[0].credential,
            CredentialInput {
                provider: "anthropic".into(),
                base_url: "https://api.anthropic.com/v1".into(),
                header: "x-api-key".into(),
                prefix: String::new(),
                secret: UserSecret {
                    env_name: "ANTHROPIC_API_KEY".into(),
                    existing: None
                },
                preset: Some("anthropic".into()),
            }
        );
        // Google's later variables count too, in opencode's order.
        let a = pick(
            &c,
            &env(&[("GEMINI_API_KEY", "g"), ("OPENAI_API_KEY", "o")]),
        )
        .expect("two");
        assert_eq!(ids_of(&a), ["openai", "google"]);
        assert_eq!(a[1].credential.secret.env_name, "GEMINI_API_KEY");
        assert_eq!(a[1].credential.header, "x-goog-api-key");
        let a = pick(
            &c,
            &env(&[("GEMINI_API_KEY", "g"), ("GOOGLE_API_KEY", "g2")]),
        )
        .expect("google");
        assert_eq!(a[0].credential.secret.env_name, "GOOGLE_API_KEY");
    }

    #[test]
    fn providers_names_exactly_the_presets_in_use() {
        let named = [NamedPreset {
            id: "openai".into(),
            existing: None,
            at: "c.toml:2:13".into(),
        }];
        let c = Choice {
            named: Some(&named),
            ..Default::default()
        };
        let both = [("ANTHROPIC_API_KEY", "a"), ("OPENAI_API_KEY", "o")];
        assert_eq!(ids_of(&pick(&c, &env(&both)).expect("named")), ["openai"]);
        // providers = []: none, whatever is set.
        let c0 = Choice {
            named: Some(&[]),
            ..Default::default()
        };
        assert!(pick(&c0, &env(&both)).expect("none").is_empty());
        // Named without its variable.
        let e = pick(&c, &env(&[])).expect_err("unset");
        assert_eq!(
            e,
            "c.toml:2:13: [agent] providers names openai, but OPENAI_API_KEY is not set in devaipod's environment: export OPENAI_API_KEY, or name a podman secret that holds the key (openai=SECRET), or remove openai from providers"
        );
        let g = [NamedPreset {
            id: "google".into(),
            existing: None,
            at: "c.toml:2:13".into(),
        }];
        let e = pick(
            &Choice {
                named: Some(&g),
                ..Default::default()
            },
            &env(&[]),
        )
        .expect_err("unset");
        assert!(
            e.contains(
                "but GOOGLE_API_KEY, GOOGLE_GENERATIVE_AI_API_KEY or GEMINI_API_KEY is not set"
            ),
            "{e}"
        );
        // Named with a podman secret: no variable needed.
        let s = [NamedPreset {
            id: "openai".into(),
            existing: Some("my-openai".into()),
            at: "c.toml:2:13".into(),
        }];
        let a = pick(
            &Choice {
                named: Some(&s),
                ..Default::default()
            },
            &env(&[]),
        )
        .expect("secret");
        assert_eq!(
            a[0].credential.secret.existing.as_deref(),
            Some("my-openai")
        );
        assert_eq!(
            a[0].origin,
            "[agent] providers at c.toml:2:13 (podman secret my-openai)"
        );
        // Not a preset.
        let x = [NamedPreset {
            id: "ollama".into(),
            existing: None,
            at: "c.toml:2:13".into(),
        }];
        let e = pick(
            &Choice {
                named: Some(&x),
                ..Default::default()
            },
            &env(&[]),
        )
        .expect_err("unknown");
        assert_eq!(
            e,
            format!(
                "c.toml:2:13: [agent] providers: \"ollama\" is no built-in preset ({}); configure other providers with [agent.credentials.ID]",
                ids()
            )
        );
    }

    #[test]
    fn explicit_credentials_win_and_hand_settings_or_agent_secrets_are_errors() {
        let explicit = ["anthropic".to_string()];
        let c = Choice {
            explicit: &explicit,
            ..Default::default()
        };
        let a = pick(
            &c,
            &env(&[("ANTHROPIC_API_KEY", "a"), ("GROQ_API_KEY", "g")]),
        )
        .expect("explicit");
        assert_eq!(ids_of(&a), ["groq"]);
        let hand = [HandSetting {
            provider: "groq".into(),
            setting: "provider.groq.options.apiKey".into(),
            at: "c.toml:5:1".into(),
        }];
        let c = Choice {
            hand: &hand,
            ..Default::default()
        };
        assert!(pick(&c, &env(&[])).expect("unset").is_empty());
        let e = pick(&c, &env(&[("GROQ_API_KEY", "g")])).expect_err("hand");
        assert_eq!(
            e,
            "c.toml:5:1: [agent.opencode] provider.groq.options.apiKey configures provider groq by hand, but GROQ_API_KEY is set in devaipod's environment, which makes groq a built-in credential route (the proxy holds the key): remove provider.groq.options.apiKey to use the preset, or set [agent] providers to the presets you want (without groq)"
        );
        let secrets = ["GROQ_API_KEY".to_string()];
        let c = Choice {
            agent_secrets: &secrets,
            ..Default::default()
        };
        let e = pick(&c, &env(&[("GROQ_API_KEY", "g")])).expect_err("secret");
        assert!(
            e.starts_with("[agent] secrets lists GROQ_API_KEY, which puts it inside the agent, but GROQ_API_KEY is set"),
            "{e}"
        );
    }

    #[test]
    fn models_and_test_urls() {
        let urls = parse_test_urls("deepseek=https://llm.test/x/v1").expect("urls");
        let c = Choice {
            test_urls: Some(&urls),
            ..Default::default()
        };
        let one = pick(&c, &env(&[("DEEPSEEK_API_KEY", "d")])).expect("one");
        assert_eq!(one[0].credential.base_url, "https://llm.test/x/v1");
        assert_eq!(default_model(&one), Ok(Some("deepseek/deepseek-v4-pro")));
        assert_eq!(default_model(&[]), Ok(None));
        let two = pick(&c, &env(&[("DEEPSEEK_API_KEY", "d"), ("XAI_API_KEY", "x")])).expect("two");
        assert_eq!(
            default_model(&two).expect_err("two"),
            "several provider presets are in use (deepseek from DEEPSEEK_API_KEY, xai from XAI_API_KEY) and no model is chosen: pass --model (e.g. --model deepseek/deepseek-v4-pro), set [agent] model, or set [agent] providers to one of them"
        );
        assert!(parse_test_urls("nope=https://x.example").is_err());
        assert!(parse_test_urls("deepseek").is_err());
        assert!(parse_test_urls("deepseek=ftp://x.example").is_err());
        assert_eq!(parse_test_urls("").expect("empty").len(), 0);
    }
}
