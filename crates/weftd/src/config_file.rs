//! `/etc/weft/daemon.json` (or `--config-file PATH`), as dockerd's `daemon.json`: each key is a
//! flag's long name (Docker's keys where Docker has the option: `bip`, `fixed-cidr`, `mtu`,
//! `bridge`, `icc`, `ip`, `ip-masq`, `iptables`, `dns`, `default-address-pools`, `hosts`,
//! `data-root`, `exec-root`, `log-level`, …). Flags given on the command line win. The file
//! becomes flags placed before the command line's, so one parser reads both and a flag given
//! twice keeps its last value. An unknown key or a bad value stops the start with one line
//! naming the key.

use std::path::{Path, PathBuf};

use clap::{CommandFactory, FromArgMatches};
use serde_json::Value;

/// Where weftd looks when `--config-file` is not given (read only if it exists).
pub const DEFAULT_PATH: &str = "/etc/weft/daemon.json";

/// Docker's keys whose flag has another name here.
const ALIASES: &[(&str, &str)] = &[("hosts", "host"), ("default-address-pools", "default-address-pool"), ("log-driver", ""), ("live-restore", "")];

/// Keys that are not flags: the file's own path.
const NOT_IN_FILE: &[&str] = &["config-file", "help", "version"];

/// The arguments, the file's keys (as flags) before the command line's: as `T`, and as clap
/// parsed them (by id, which SIGHUP compares).
pub fn parse<T: CommandFactory + FromArgMatches>(argv: Vec<String>) -> Result<(T, clap::ArgMatches), String> {
    let m = matches::<T>(argv)?;
    Ok((T::from_arg_matches(&m).map_err(|e| e.to_string())?, m))
}

fn matches<T: CommandFactory>(argv: Vec<String>) -> Result<clap::ArgMatches, String> {
    let cmd = T::command();
    // Where the file is: --config-file on the command line, else the default if it exists.
    let given = argv.windows(2).find(|w| w[0] == "--config-file").map(|w| PathBuf::from(&w[1])).or_else(|| argv.iter().find_map(|a| a.strip_prefix("--config-file=").map(PathBuf::from)));
    let path = match given {
        Some(p) => Some(p),
        None => Some(PathBuf::from(DEFAULT_PATH)).filter(|p| p.exists()),
    };
    let mut merged = vec![argv.first().cloned().unwrap_or_else(|| "weftd".into())];
    if let Some(path) = &path {
        let on_cli: Vec<String> = cmd.clone().try_get_matches_from(&argv).map(|m| m.ids().filter(|id| m.value_source(id.as_str()) == Some(clap::parser::ValueSource::CommandLine)).map(|id| id.to_string()).collect()).unwrap_or_default();
        merged.extend(file_args(&cmd, path, &on_cli)?);
    }
    merged.extend(argv.iter().skip(1).cloned());
    match cmd.clone().try_get_matches_from(merged) {
        Ok(m) => Ok(m),
        // The command line parses alone: the file's keys together are what is wrong (two
        // options that exclude each other).
        Err(e) if path.is_some() && cmd.try_get_matches_from(&argv).is_ok() => {
            let why = e.to_string().lines().next().unwrap_or_default().trim_start_matches("error: ").to_string();
            Err(format!("config file {}: {why}", path.as_deref().unwrap_or(Path::new("")).display()))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// The long names of the options whose values differ between `a` and `b`, except `live` (ids of
/// options applied without a restart).
pub fn changed<T: CommandFactory>(a: &clap::ArgMatches, b: &clap::ArgMatches, live: &[&str]) -> Vec<String> {
    let raw = |m: &clap::ArgMatches, id: &str| -> Vec<std::ffi::OsString> { m.get_raw(id).map(|v| v.map(|s| s.to_os_string()).collect()).unwrap_or_default() };
    T::command()
        .get_arguments()
        .filter(|arg| !live.contains(&arg.get_id().as_str()))
        .filter(|arg| raw(a, arg.get_id().as_str()) != raw(b, arg.get_id().as_str()))
        .map(|arg| arg.get_long().map_or_else(|| arg.get_id().to_string(), str::to_string))
        .collect()
}

/// The file's keys as `--flag=value` arguments, except those the command line gives.
fn file_args(cmd: &clap::Command, path: &Path, on_cli: &[String]) -> Result<Vec<String>, String> {
    let here = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("config file {here}: {e}"))?;
    let v: Value = serde_json::from_str(&text).map_err(|e| format!("config file {here}: not JSON: {e}"))?;
    let obj = v.as_object().ok_or_else(|| format!("config file {here}: expected a JSON object of options"))?;
    let mut out = Vec::new();
    for (key, value) in obj {
        let name = ALIASES.iter().find(|(k, _)| k == key).map(|(_, f)| *f).unwrap_or(key.as_str());
        if name.is_empty() {
            return Err(format!("config file {here}: key {key:?} is dockerd's and means nothing to weft"));
        }
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(name) && !NOT_IN_FILE.contains(&name))
            .ok_or_else(|| format!("config file {here}: unknown key {key:?}"))?;
        if on_cli.iter().any(|id| id == arg.get_id().as_str()) {
            continue;
        }
        let values: Vec<String> = match value {
            Value::Array(items) => items.iter().map(|i| scalar(key, i)).collect::<Result<_, _>>()?,
            other => vec![scalar(key, other)?],
        };
        // A switch (`--reset-state`) is on with `true` and absent with `false`.
        let flags: Vec<String> = match (arg.get_action(), value) {
            (clap::ArgAction::SetTrue, Value::Bool(true)) => vec![format!("--{name}")],
            (clap::ArgAction::SetTrue, Value::Bool(false)) => Vec::new(),
            (clap::ArgAction::SetTrue, other) => return Err(format!("config file {here}: key {key:?}: expected true or false, not {other}")),
            _ => values.iter().map(|v| format!("--{name}={v}")).collect(),
        };
        // Each key alone through the parser: a bad value names its key, in one line.
        let mut probe = vec!["weftd".to_string()];
        probe.extend(flags.iter().cloned());
        if let Err(e) = cmd.clone().try_get_matches_from(&probe) {
            let why = e.to_string().lines().next().unwrap_or_default().trim_start_matches("error: ").to_string();
            return Err(format!("config file {here}: key {key:?}: {why}"));
        }
        out.extend(flags);
    }
    Ok(out)
}

/// A value as its flag takes it: a string, number or boolean as written; a
/// `default-address-pools` entry `{"base": CIDR, "size": N}` as `base=CIDR,size=N`.
fn scalar(key: &str, v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Object(o) if o.contains_key("base") => Ok(format!("base={},size={}", o["base"].as_str().unwrap_or_default(), o.get("size").map(|s| s.to_string()).unwrap_or_default())),
        other => Err(format!("key {key:?}: unexpected value {other}")),
    }
}
