//! Rollback: the undo steps of an action, run in reverse order if it does not commit.

/// What was done, and how to undo it.
type Step = (&'static str, Box<dyn FnOnce() + Send>);

pub struct Undo {
    steps: Vec<Step>,
}

impl Undo {
    pub fn new() -> Self {
        Self { steps: Vec::new() }
    }

    /// Registers how to remove what was just created.
    pub fn push(&mut self, what: &'static str, f: impl FnOnce() + Send + 'static) {
        self.steps.push((what, Box::new(f)));
    }

    /// Takes over `other`'s steps, to be undone after (before, in time) this one's later steps.
    pub fn extend(&mut self, mut other: Undo) {
        self.steps.append(&mut other.steps);
    }

    /// The action succeeded: keep everything.
    pub fn commit(mut self) {
        self.steps.clear();
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        while let Some((what, f)) = self.steps.pop() {
            tracing::debug!(step = what, "rollback");
            f();
        }
    }
}
