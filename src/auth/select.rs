//! Which credential is in use (DESIGN.md §2): an API key from `OPENAI_API_KEY` (non-empty) or
//! else from auth.json, ChatGPT tokens from auth.json, ordered by `preferred_auth_method`. When
//! the user has not set a preference, a file that declares `auth_mode` offers only the
//! credential it names (as current Codex reads it); a preference the user set (config.toml or
//! `-c`) always wins, as the seed documents ("always use your API key, even when ChatGPT auth
//! exists").

use crate::auth::file::{AuthFile, AuthMode, Tokens};
use crate::config::{AuthMethod, Preference};
use crate::secret::Secret;
use serde::Serialize;

/// Where an API key came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Env,
    File,
}

/// The credential the agent would use.
#[derive(Debug, Clone, PartialEq)]
pub enum Selected<'a> {
    ApiKey { key: Secret, source: Source },
    ChatGpt { tokens: &'a Tokens },
}

/// Apply the selection rule. `env_key` is the value of `OPENAI_API_KEY`, if set.
pub fn select<'a>(preferred: Preference, env_key: Option<&str>, file: Option<&'a AuthFile>) -> Option<Selected<'a>> {
    // The file's `auth_mode` narrows what it offers only when the user expressed no preference.
    let mode = if preferred.explicit { None } else { file.and_then(AuthFile::auth_mode) };
    let api_key = match env_key.filter(|k| !k.is_empty()) {
        Some(k) => Some(Selected::ApiKey { key: Secret::new(k), source: Source::Env }),
        None => file
            .filter(|_| mode != Some(AuthMode::ChatGpt))
            .and_then(AuthFile::api_key)
            .map(|k| Selected::ApiKey { key: k.clone(), source: Source::File }),
    };
    let chatgpt = file
        .filter(|_| mode != Some(AuthMode::ApiKey))
        .and_then(|f| f.tokens.as_ref())
        .map(|tokens| Selected::ChatGpt { tokens });
    match preferred.method {
        AuthMethod::ApiKey => api_key.or(chatgpt),
        AuthMethod::ChatGpt => chatgpt.or(api_key),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::claims::test_jwt;

    fn tokens() -> Tokens {
        Tokens {
            id_token: Secret::new(test_jwt(&serde_json::json!({}))),
            access_token: Secret::new("at"),
            refresh_token: Secret::new("rt"),
            account_id: None,
            extra: Default::default(),
        }
    }

    #[derive(Debug, PartialEq)]
    enum Want {
        EnvKey,
        FileKey,
        Tokens,
        Nothing,
    }

    #[test]
    fn every_combination() {
        use Want::*;
        // (env key, file key, file tokens, preference) -> expected
        let table = [
            (false, false, false, AuthMethod::ChatGpt, Nothing),
            (false, false, false, AuthMethod::ApiKey, Nothing),
            (true, false, false, AuthMethod::ChatGpt, EnvKey),
            (true, false, false, AuthMethod::ApiKey, EnvKey),
            (false, true, false, AuthMethod::ChatGpt, FileKey),
            (false, true, false, AuthMethod::ApiKey, FileKey),
            (false, false, true, AuthMethod::ChatGpt, Tokens),
            (false, false, true, AuthMethod::ApiKey, Tokens),
            (true, true, false, AuthMethod::ChatGpt, EnvKey),
            (true, true, false, AuthMethod::ApiKey, EnvKey),
            (true, false, true, AuthMethod::ChatGpt, Tokens),
            (true, false, true, AuthMethod::ApiKey, EnvKey),
            (false, true, true, AuthMethod::ChatGpt, Tokens),
            (false, true, true, AuthMethod::ApiKey, FileKey),
            (true, true, true, AuthMethod::ChatGpt, Tokens),
            (true, true, true, AuthMethod::ApiKey, EnvKey),
        ];
        for (env, fkey, ftok, pref, want) in table {
            let file = AuthFile {
                openai_api_key: fkey.then(|| Secret::new("sk-file")),
                tokens: ftok.then(tokens),
                last_refresh: None,
                extra: Default::default(),
            };
            let env_key = env.then_some("sk-env");
            let got = match select(Preference::explicit(pref), env_key, Some(&file)) {
                None => Nothing,
                Some(Selected::ChatGpt { .. }) => Tokens,
                Some(Selected::ApiKey { key, source: Source::Env }) => {
                    assert_eq!(key.expose(), "sk-env");
                    EnvKey
                }
                Some(Selected::ApiKey { key, source: Source::File }) => {
                    assert_eq!(key.expose(), "sk-file");
                    FileKey
                }
            };
            assert_eq!(got, want, "env={env} file_key={fkey} tokens={ftok} pref={pref}");
        }
    }

    #[test]
    fn auth_mode_decides_which_credential_a_file_is_for() {
        let mut both = AuthFile {
            openai_api_key: Some(Secret::new("sk-file")),
            tokens: Some(tokens()),
            last_refresh: None,
            extra: Default::default(),
        };
        both.set_auth_mode(AuthMode::ChatGpt);
        let unset = Preference::default();
        // Without a preference, an llmx ChatGPT login that also holds the exchanged key is a
        // ChatGPT login...
        assert!(matches!(select(unset, None, Some(&both)), Some(Selected::ChatGpt { .. })));
        // ...but a preference the user set wins over auth_mode ("always use your API key").
        let apikey = Preference::explicit(AuthMethod::ApiKey);
        let chatgpt = Preference::explicit(AuthMethod::ChatGpt);
        assert!(matches!(select(apikey, None, Some(&both)), Some(Selected::ApiKey { source: Source::File, .. })));
        assert!(matches!(select(apikey, Some("sk-env"), Some(&both)), Some(Selected::ApiKey { .. })));
        both.set_auth_mode(AuthMode::ApiKey);
        assert!(matches!(select(unset, None, Some(&both)), Some(Selected::ApiKey { .. })));
        assert!(matches!(select(chatgpt, None, Some(&both)), Some(Selected::ChatGpt { .. })));
        both.extra.insert("auth_mode".into(), "something-new".into());
        assert!(matches!(select(unset, None, Some(&both)), Some(Selected::ChatGpt { .. })));
    }

    #[test]
    fn empty_values_do_not_count() {
        let file = AuthFile::with_api_key(Secret::new(""));
        let apikey = Preference::explicit(AuthMethod::ApiKey);
        assert_eq!(select(apikey, Some(""), Some(&file)), None);
        assert_eq!(select(apikey, None, None), None);
    }
}
