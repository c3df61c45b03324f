//! Steps inside a part: a value the part's work produced once, recorded
//! in a durable run's journal and handed back instead of produced again
//! (see [`PartContext::step`](crate::PartContext::step)).

use serde::Serialize;
use serde::de::DeserializeOwned;
use sk_cereal::External;

use crate::error::StepError;

/// Step `step` of `part`: the value `recorded` (from the journal, read
/// by the caller), else `f`'s, recorded with `record` before it is
/// returned. Outside a durable run `recorded` is `Ok(None)` and `record`
/// does nothing.
pub(crate) fn run_step<T, E>(
    part: &str,
    step: &str,
    recorded: Result<Option<Vec<u8>>, String>,
    record: impl FnOnce(Vec<u8>) -> Result<(), String>,
    f: impl FnOnce() -> Result<T, E>,
) -> Result<T, StepError>
where
    T: Serialize + DeserializeOwned,
    E: Into<sk_core::BoxError>,
{
    let journal = |why: String| StepError::Journal {
        part: part.to_owned(),
        step: step.to_owned(),
        why,
    };
    let value = |source| StepError::Value {
        part: part.to_owned(),
        step: step.to_owned(),
        source,
    };
    if let Some(bytes) = recorded.map_err(journal)? {
        return External::decode(&bytes).map_err(value);
    }
    let made = f().map_err(|e| StepError::Failed {
        part: part.to_owned(),
        step: step.to_owned(),
        source: e.into(),
    })?;
    let bytes = External::encode(&made).map_err(value)?;
    record(bytes).map_err(journal)?;
    Ok(made)
}
