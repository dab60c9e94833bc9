//! Gathering the replies of one query sent to several gateways: one slot per request,
//! filled by a reply or failed (link lost, frame not queued, deadline passed), then folded
//! by the query's [`Merge`]. Shared by the worker core and a GatewayClient core; it only
//! holds state, the caller decides when a reply or a failure arrives.

use std::time::Duration;

use super::merge::Merge;
use super::{ApiError, ApiResult};
use crate::protocol::client_id::GatewayAddr;
use crate::protocol::php::PhpValue;

/// What a query returns when some gateways did not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeoutPolicy {
    /// [`ApiError::Timeout`] with the number of missing gateways.
    #[default]
    Fail,
    /// The merge of the replies received (the original's behaviour, silently partial).
    Partial,
}

#[derive(Debug, Clone)]
enum Slot {
    Waiting,
    Answered(PhpValue),
    Failed,
}

/// The replies of one query so far.
#[derive(Debug)]
pub struct Gather {
    merge: Merge,
    deadline: Duration,
    targets: Vec<GatewayAddr>,
    slots: Vec<Slot>,
    /// Gateways that should have been asked but could not be (no link).
    missing: Vec<GatewayAddr>,
}

impl Gather {
    /// A query to `targets` (one slot each, in request order) due by `deadline`;
    /// `missing` gateways count as unanswered from the start.
    pub fn new(
        merge: Merge,
        targets: Vec<GatewayAddr>,
        missing: Vec<GatewayAddr>,
        deadline: Duration,
    ) -> Gather {
        let slots = vec![Slot::Waiting; targets.len()];
        Gather {
            merge,
            deadline,
            targets,
            slots,
            missing,
        }
    }

    /// When the query gives up on the gateways still owing a reply.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// The reply for slot `slot`; ignored unless the slot is still waiting.
    pub fn answer(&mut self, slot: usize, value: PhpValue) {
        if let Some(s @ Slot::Waiting) = self.slots.get_mut(slot) {
            *s = Slot::Answered(value);
        }
    }

    /// Slot `slot` will never be answered.
    pub fn fail(&mut self, slot: usize) {
        if let Some(s @ Slot::Waiting) = self.slots.get_mut(slot) {
            *s = Slot::Failed;
        }
    }

    /// Fails every waiting slot (the deadline passed).
    pub fn expire(&mut self) {
        for slot in 0..self.slots.len() {
            self.fail(slot);
        }
    }

    /// True once no slot is waiting.
    pub fn is_complete(&self) -> bool {
        !self.slots.iter().any(|s| matches!(s, Slot::Waiting))
    }

    /// The result and the gateways missing from it (request order, then the missing ones).
    pub fn finish(self, policy: TimeoutPolicy) -> (ApiResult, Vec<GatewayAddr>) {
        let mut answered = Vec::with_capacity(self.targets.len());
        let mut unanswered = Vec::new();
        for (addr, slot) in self.targets.iter().zip(self.slots) {
            match slot {
                Slot::Answered(v) => answered.push((*addr, v)),
                Slot::Waiting | Slot::Failed => unanswered.push(*addr),
            }
        }
        unanswered.extend(self.missing);
        let result = if unanswered.is_empty() || policy == TimeoutPolicy::Partial {
            Ok(self.merge.merge(&answered))
        } else {
            Err(ApiError::Timeout {
                missing: unanswered.len(),
            })
        };
        (result, unanswered)
    }
}
