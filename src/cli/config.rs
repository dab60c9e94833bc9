//! The TOML config file given with `--config`: one optional table per subcommand, keyed
//! like the flags (see [`SETTINGS_HELP`](super::args)), plus `log-format` at the top.
//!
//! Unknown keys are errors that name the key: a typo must not silently fall back to a
//! default.

use std::path::Path;

use serde::Deserialize;

use super::args::{
    ClientOptions, GatewayArgs, LogFormat, RegisterArgs, StartArgs, StatusArgs, WorkerArgs,
};
use super::error::CliError;

/// Largest config file read, in bytes: a config file is a few lines; anything this big is
/// a wrong path.
pub const CONFIG_SIZE_MAX: u64 = 1024 * 1024;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ConfigFile {
    /// Same as `--log-format`.
    pub log_format: Option<LogFormat>,
    /// Settings of `gatewayworker register`.
    #[serde(default)]
    pub register: RegisterArgs,
    /// Settings of `gatewayworker gateway`.
    #[serde(default)]
    pub gateway: GatewayArgs,
    /// Settings of `gatewayworker status`.
    #[serde(default)]
    pub status: StatusArgs,
    /// Settings of `gatewayworker worker`.
    #[serde(default)]
    pub worker: WorkerArgs,
    /// Settings of `gatewayworker start`.
    #[serde(default)]
    pub start: StartArgs,
    /// Settings of `gatewayworker client` (the flags before the call).
    #[serde(default)]
    pub client: ClientOptions,
}

impl ConfigFile {
    /// Reads and checks the file at `path`.
    pub fn load(path: &Path) -> Result<ConfigFile, CliError> {
        let read_error = |source| CliError::ConfigRead {
            path: path.to_owned(),
            source,
        };
        let size = std::fs::metadata(path).map_err(read_error)?.len();
        if size > CONFIG_SIZE_MAX {
            return Err(CliError::ConfigInvalid {
                path: path.to_owned(),
                line: String::new(),
                message: format!("{size} bytes is over the {CONFIG_SIZE_MAX}-byte limit"),
            });
        }
        let text = std::fs::read_to_string(path).map_err(read_error)?;
        ConfigFile::parse(&text).map_err(|(line, message)| CliError::ConfigInvalid {
            path: path.to_owned(),
            line: line.map(|n| format!(", line {n}")).unwrap_or_default(),
            message,
        })
    }

    /// Parses file contents; on error, the 1-based line (when known) and a one-line message.
    pub fn parse(text: &str) -> Result<ConfigFile, (Option<usize>, String)> {
        toml::from_str(text).map_err(|e: toml::de::Error| {
            let line = e
                .span()
                .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
            let message = e
                .message()
                .trim()
                .replace("unknown field", "unknown key")
                .replace('\n', " ");
            (line, message)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_all_defaults() {
        let file = ConfigFile::parse("").unwrap();
        assert!(file.log_format.is_none());
        assert!(file.gateway.listen.is_none());
        assert!(file.register.secret.is_none());
    }

    #[test]
    fn keys_are_the_flag_names() {
        let file = ConfigFile::parse(
            "log-format = \"json\"\n[gateway]\nstart-port = 3000\nregister = [\"a:1\", \"b:2\"]\n\
             router = \"random\"\nlan-ip = \"10.0.0.2\"\n[register]\nlisten = \"0.0.0.0:1\"\n",
        )
        .unwrap();
        assert_eq!(file.log_format, Some(LogFormat::Json));
        assert_eq!(file.gateway.start_port, Some(3000));
        assert_eq!(
            file.gateway.register,
            Some(vec!["a:1".to_owned(), "b:2".to_owned()])
        );
        assert_eq!(file.gateway.lan_ip, Some("10.0.0.2".parse().unwrap()));
        assert_eq!(file.register.listen.as_deref(), Some("0.0.0.0:1"));
    }

    #[test]
    fn compression_keys() {
        use super::super::args::Compression;
        let file = ConfigFile::parse(
            "[gateway]\ncompression = \"no-context-takeover\"\ncompression-min-size = 200\n",
        )
        .unwrap();
        assert_eq!(
            file.gateway.compression,
            Some(Compression::NoContextTakeover)
        );
        assert_eq!(file.gateway.compression_min_size, Some(200));
        let (_, message) = ConfigFile::parse("[gateway]\ncompression = \"gzip\"\n").unwrap_err();
        assert!(message.contains("gzip"), "{message}");
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let (line, message) =
            ConfigFile::parse("[gateway]\ncount = 2\nstart_prot = 3\n").unwrap_err();
        assert_eq!(line, Some(3));
        assert!(message.contains("unknown key `start_prot`"), "{message}");
        let (_, message) = ConfigFile::parse("colour = 1\n").unwrap_err();
        assert!(message.contains("`colour`"), "{message}");
    }

    #[test]
    fn the_readme_example_is_valid() {
        let readme = include_str!("../../README.md");
        let start = readme
            .find("```toml\n")
            .expect("a toml block in the README")
            + 8;
        let end = start + readme[start..].find("```").unwrap();
        let file = ConfigFile::parse(&readme[start..end]).unwrap();
        assert_eq!(file.gateway.count, Some(4));
        assert_eq!(
            file.gateway.ping_data.as_deref(),
            Some("{\"type\":\"ping\"}")
        );
        assert_eq!(file.status.register.as_deref(), Some("10.0.0.1:1236"));
    }

    #[test]
    fn wrong_type_is_an_error() {
        let (line, message) = ConfigFile::parse("[gateway]\n\ncount = \"two\"\n").unwrap_err();
        assert_eq!(line, Some(3));
        assert!(!message.contains('\n'));
    }

    #[test]
    fn worker_start_and_client_tables() {
        let file = ConfigFile::parse(
            "[worker]\nwasm = \"chat.wasm\"\ncount = 4\nregister = [\"10.0.0.1:1236\"]\n\
             reload-poll = 2\n[start]\nlisten = \"text://0.0.0.0:7000\"\n\
             register = \"127.0.0.1:1300\"\nworker-count = 3\ngateway-count = 2\n\
             [client]\ngateway = [\"10.0.0.5:2000\", \"10.0.0.5:2001\"]\nsecret = \"k\"\n\
             connect-timeout = 1\ntimeout = 2\npartial = true\n",
        )
        .unwrap();
        assert_eq!(file.worker.wasm.as_deref(), Some(Path::new("chat.wasm")));
        assert_eq!(file.worker.count, Some(4));
        assert_eq!(file.worker.register, Some(vec!["10.0.0.1:1236".to_owned()]));
        assert_eq!(file.worker.reload_poll, Some(2));
        assert_eq!(file.start.listen.as_deref(), Some("text://0.0.0.0:7000"));
        assert_eq!(file.start.register, Some("127.0.0.1:1300".parse().unwrap()));
        assert_eq!(file.start.worker_count, Some(3));
        assert_eq!(file.start.gateway_count, Some(2));
        assert_eq!(file.client.gateway.as_ref().map(Vec::len), Some(2));
        assert_eq!(file.client.secret.as_deref(), Some("k"));
        assert_eq!(file.client.connect_timeout, Some(1));
        assert_eq!(file.client.timeout, Some(2));
        assert_eq!(file.client.partial, Some(true));
    }

    #[test]
    fn worker_suspect_after_ms_sets_the_core_and_zero_turns_it_off() {
        let file =
            ConfigFile::parse("[worker]\nwasm = \"w.wasm\"\nsuspect-after-ms = 750\n").unwrap();
        assert_eq!(file.worker.suspect_after_ms, Some(750));
        let settings = crate::cli::worker::settings(&file.worker).unwrap();
        assert_eq!(
            settings.core.suspect_after,
            Some(std::time::Duration::from_millis(750))
        );
        let off = crate::cli::args::WorkerArgs {
            suspect_after_ms: Some(0),
            ..file.worker.clone()
        };
        assert_eq!(
            crate::cli::worker::settings(&off)
                .unwrap()
                .core
                .suspect_after,
            None
        );
        let default = crate::cli::args::WorkerArgs {
            suspect_after_ms: None,
            ..file.worker
        };
        assert_eq!(
            crate::cli::worker::settings(&default)
                .unwrap()
                .core
                .suspect_after,
            Some(gatewayworker::worker::core::SUSPECT_AFTER_DEFAULT)
        );
    }

    #[test]
    fn gateway_link_pause_max_ms_sets_the_core_and_zero_turns_pacing_off() {
        use std::time::Duration;
        let file = ConfigFile::parse("[gateway]\nlink-pause-max-ms = 250\n").unwrap();
        assert_eq!(file.gateway.link_pause_max_ms, Some(250));
        let core = |args: &crate::cli::args::GatewayArgs| {
            crate::cli::gateway::settings(args)
                .unwrap()
                .core
                .link_pause_max
        };
        assert_eq!(core(&file.gateway), Duration::from_millis(250));
        let off = crate::cli::args::GatewayArgs {
            link_pause_max_ms: Some(0),
            ..file.gateway.clone()
        };
        assert_eq!(core(&off), Duration::ZERO);
        let default = crate::cli::args::GatewayArgs {
            link_pause_max_ms: None,
            ..file.gateway
        };
        assert_eq!(
            core(&default),
            gatewayworker::gateway::LINK_PAUSE_MAX_DEFAULT
        );
    }

    #[test]
    fn guest_limit_keys() {
        use super::super::args::OnOff;
        let file = ConfigFile::parse(
            "[worker]\nfuel-per-event = 1\nfuel-per-input-byte = 2\nmemory-max-bytes = 3\n\
             event-time-max-ms = 4\npooling = \"on\"\npackage-size-max = 5\n\
             [start]\nfuel-per-event = 6\nfuel-per-input-byte = 7\nmemory-max-bytes = 8\n\
             event-time-max-ms = 9\npooling = \"off\"\npackage-size-max = 10\n",
        )
        .unwrap();
        let w = &file.worker;
        assert_eq!(
            (w.fuel_per_event, w.fuel_per_input_byte, w.memory_max_bytes),
            (Some(1), Some(2), Some(3))
        );
        assert_eq!(
            (w.event_time_max_ms, w.pooling, w.package_size_max),
            (Some(4), Some(OnOff::On), Some(5))
        );
        let s = &file.start;
        assert_eq!(
            (s.fuel_per_event, s.fuel_per_input_byte, s.memory_max_bytes),
            (Some(6), Some(7), Some(8))
        );
        assert_eq!(
            (s.event_time_max_ms, s.pooling, s.package_size_max),
            (Some(9), Some(OnOff::Off), Some(10))
        );
        let (line, message) = ConfigFile::parse("[worker]\nfuel = 1\n").unwrap_err();
        assert_eq!(line, Some(2));
        assert!(message.contains("unknown key `fuel`"), "{message}");
        let (_, message) = ConfigFile::parse("[start]\npooling = true\n").unwrap_err();
        assert!(!message.contains('\n'), "{message}");
    }

    #[test]
    fn unknown_keys_of_the_new_tables_are_named() {
        for (table, key) in [
            ("worker", "wasm_path"),
            ("start", "workers"),
            ("client", "registr"),
        ] {
            let (line, message) =
                ConfigFile::parse(&format!("[{table}]\n{key} = 1\n")).unwrap_err();
            assert_eq!(line, Some(2), "{table}");
            assert!(
                message.contains(&format!("unknown key `{key}`")),
                "{message}"
            );
        }
    }

    #[test]
    fn flags_win_over_the_new_tables() {
        let file = ConfigFile::parse(
            "[worker]\nwasm = \"a.wasm\"\nname = \"Chat\"\n[start]\nworker-count = 3\nsecret = \"f\"\n\
             [client]\nregister = [\"r:1\"]\nsecret = \"f\"\ntimeout = 9\n",
        )
        .unwrap();
        let worker = WorkerArgs {
            wasm: Some("b.wasm".into()),
            ..WorkerArgs::default()
        }
        .merge(file.worker);
        assert_eq!(worker.wasm.as_deref(), Some(Path::new("b.wasm")));
        assert_eq!(worker.name.as_deref(), Some("Chat"));
        let start = StartArgs {
            secret: Some("flag".into()),
            ..StartArgs::default()
        }
        .merge(file.start);
        assert_eq!(start.secret.as_deref(), Some("flag"));
        assert_eq!(start.worker_count, Some(3));
        // The demo page: the file's `no-demo` holds unless a flag names the page.
        let demo_file = ConfigFile::parse("[start]\nno-demo = true\n").unwrap();
        assert!(StartArgs::default().merge(demo_file.start.clone()).no_demo);
        let flag = StartArgs {
            demo_listen: Some("127.0.0.1:8000".parse().unwrap()),
            ..StartArgs::default()
        }
        .merge(demo_file.start);
        assert!(!flag.no_demo);
        assert_eq!(flag.demo_listen, Some("127.0.0.1:8000".parse().unwrap()));
        // --gateway on the command line replaces the file's register: one source only.
        let client = ClientOptions {
            gateway: Some(vec!["127.0.0.1:2000".into()]),
            ..ClientOptions::default()
        }
        .merge(file.client.clone());
        assert_eq!(client.register, None);
        assert_eq!(client.secret.as_deref(), Some("f"));
        assert_eq!(client.timeout, Some(9));
        let client = ClientOptions::default().merge(file.client);
        assert_eq!(client.register, Some(vec!["r:1".to_owned()]));
    }
}
