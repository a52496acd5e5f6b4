//! What a streaming subscription (SSE or WebSocket) reads: a consumer group, or a live
//! tail. Shared so both endpoints check rights and create groups the same way.

use pulse_core::log::validate_group_name;
use pulse_core::{GroupConfig, Pattern, StartPosition};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// The source of a subscription.
pub(crate) enum Target {
    /// Through a consumer group (at least once, acknowledged).
    Group {
        /// The group's name.
        name: String,
        /// The types it receives.
        pattern: Pattern,
    },
    /// A live tail of the log and of memory events (no acknowledgements).
    Tail {
        /// The types it receives.
        pattern: Pattern,
    },
}

/// Checks rights and creates or joins the group when one is named.
///
/// Rights are checked against the group's own pattern, whatever the request names: a
/// group's pattern is part of the group, so naming another one is a 409 `conflict` (the
/// log refuses the join) and never re-points it. With a pattern, the caller needs the
/// right to it and the group is created with it if it does not exist. Without one, the
/// group must exist (else `unknown_group`). Without a group and a pattern, the tail
/// takes every type.
pub(crate) async fn resolve(
    state: &AppState,
    caller: &Caller,
    pattern: Option<Pattern>,
    group: Option<String>,
    start: Option<StartPosition>,
) -> Result<Target, ApiError> {
    let Some(name) = group else {
        let pattern = match pattern {
            Some(p) => p,
            None => Pattern::parse(">").map_err(|e| ApiError::Internal(e.to_string()))?,
        };
        caller.require_subscribe(&pattern)?;
        return Ok(Target::Tail { pattern });
    };
    validate_group_name(&name)?;
    let pattern = match pattern {
        Some(pattern) => {
            caller.require_subscribe(&pattern)?;
            let mut config = GroupConfig::new(pattern.clone());
            config.start = start.unwrap_or_default();
            config.max_deliver = state.groups.max_deliver;
            config.ack_wait = state.groups.ack_wait;
            let info = state.log.ensure_group(&name, config).await?;
            // What the group receives is its stored pattern; check that one too.
            caller.require_subscribe(&info.pattern)?;
            info.pattern
        }
        None => {
            let info = state
                .log
                .groups()
                .await?
                .into_iter()
                .find(|g| g.name == name)
                .ok_or_else(|| ApiError::UnknownGroup(name.clone()))?;
            caller.require_subscribe(&info.pattern)?;
            info.pattern
        }
    };
    Ok(Target::Group { name, pattern })
}
