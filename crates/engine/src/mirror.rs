//! Copies of the records from which a lost store is rebuilt (`weftd --adopt-state`): each local
//! network's record in `<data-root>/networks/<id>.json`, each container's in its data directory
//! (`record.json`), as Docker keeps `config.v2.json` beside its containers. They are written after
//! the store has committed the record (a file written and renamed, not synced: the store stays
//! the truth and is the durable one; a copy only has to be good enough to adopt what still runs),
//! and never read except by the adoption in `reconcile::check_empty_store`.

use std::path::{Path, PathBuf};

use weft_model::{ContainerRecord, NetworkRecord};

const RECORD: &str = "record.json";

fn networks_dir(data_root: &Path) -> PathBuf {
    data_root.join("networks")
}

/// Writes `bytes` to `path` whole or not at all (a temporary file renamed over it). A failure is
/// logged, not returned: the store has the record.
fn write(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    let written = path.parent().map_or(Ok(()), std::fs::create_dir_all).and_then(|()| std::fs::write(&tmp, bytes)).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        tracing::warn!(path = %path.display(), error = %e, "copy of a record not written (only --adopt-state reads it)");
    }
}

/// The copy of container `rec` (`bytes`: its JSON, as committed) in data directory `dir`.
pub(crate) fn container(dir: &Path, bytes: &[u8]) {
    write(&dir.join(RECORD), bytes);
}

/// The copy of network `rec` (local ones only: a global network's record is every host's, in
/// the shared store).
pub(crate) fn network(data_root: &Path, rec: &NetworkRecord) {
    if rec.scope != weft_model::Scope::Local {
        return;
    }
    match serde_json::to_vec(rec) {
        Ok(bytes) => write(&networks_dir(data_root).join(format!("{}.json", rec.id)), &bytes),
        Err(e) => tracing::warn!(network = %rec.name, error = %e, "copy of a record not written"),
    }
}

pub(crate) fn forget_network(data_root: &Path, id: &str) {
    let _ = std::fs::remove_file(networks_dir(data_root).join(format!("{id}.json")));
}

/// The copies under `data_root` that parse: networks, and containers by the directories they
/// are in.
pub(crate) fn read(data_root: &Path) -> (Vec<NetworkRecord>, Vec<ContainerRecord>) {
    let parse = |p: PathBuf| std::fs::read(&p).ok();
    let networks = std::fs::read_dir(networks_dir(data_root))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| serde_json::from_slice(&parse(e.path())?).ok())
        .collect();
    let containers = std::fs::read_dir(data_root.join("containers"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| serde_json::from_slice::<ContainerRecord>(&parse(e.path().join(RECORD))?).ok().filter(|c| e.file_name().to_string_lossy() == c.id))
        .collect();
    (networks, containers)
}
