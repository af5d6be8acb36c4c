//! The one way a planned endpoint joins a namespace (`docs/endpoints.md`): a container's at
//! `run` and at `network connect`, and a namespace weft did not start (`network connect
//! --netns/--pid`).

use std::path::Path;
use std::sync::Arc;

use crate::undo::Undo;
use crate::{blocking, Engine, EndpointPlan, EngineError, Result};

impl Engine {
    /// Makes endpoint `plan` in namespace `netns` (with the default route if `first`), undone
    /// with `undo` unless the action commits. The namespace's previous interface of that name may
    /// still be in the reaper's queue (a detach just before): it is retired now if it is (~1 ms),
    /// else waited for.
    pub(crate) async fn join(self: &Arc<Self>, undo: &mut Undo, plan: &EndpointPlan, netns: &Path, first: bool) -> Result<()> {
        let (p, eng, pl, fw) = (netns.to_path_buf(), self.clone(), plan.clone(), self.fw.clone());
        let busy = self.reaper.busy();
        blocking(move || match pl.attach(&p, first, &fw) {
            Err(EngineError::Kernel(k)) if k.is_exists() => {
                // Taken out of the map as it is retired: the name may be taken again, by an
                // interface of another kind (a macvlan, deleted by the reaper inside), before
                // the reaper is done with this one.
                let detached = eng.lock().detached.remove(&(p.display().to_string(), pl.endpoint.ifname.clone()));
                match detached {
                    Some(old) => crate::retire_inside(&p, &[old])?,
                    None => eng.reaper.flush(),
                }
                pl.attach(&p, first, &fw)
            }
            r => r,
        })
        .await?;
        drop(busy);
        let (p, pl) = (netns.to_path_buf(), plan.clone());
        undo.push("remove the endpoint", move || pl.detach(&p));
        Ok(())
    }
}
