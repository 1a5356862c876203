//! For backend and layer authors: the helpers an implementation of [`KvStore`] uses and a
//! user of one never needs (after OpenDAL's `raw` module,
//! <https://docs.rs/opendal/latest/opendal/raw/index.html>).
//!
//! - Write batches as a backend applies them: [`BatchPlan`] (the last write per key, the
//!   checks to verify first), [`Mutation`], [`conflict`] for a failed check.
//! - Ranged reads: [`check_range`], [`slice_range`].
//! - Cancellation safety: [`run_to_completion`] and per-key write order ([`WriteOrder`],
//!   [`Ticket`]); CPU-heavy work off the async workers ([`spawn_cpu`], [`cpu_bound`]).
//! - Wrappers: [`kv_store_impl!`](crate::kv_store_impl) and the trait's default bodies in
//!   [`provided`].
//!
//! [`KvStore`]: crate::KvStore

pub use crate::batch::{BatchPlan, Mutation, conflict};
pub use crate::completion::run_to_completion;
#[cfg(feature = "testing")]
pub use crate::cpu::cpu_tasks_handed_off;
pub use crate::cpu::{CPU_INLINE_MAX_BYTES, cpu_bound, spawn_cpu};
pub use crate::store::provided;
pub use crate::store::{check_range, slice_range};
pub use crate::write_order::{STRIPES, Ticket, WriteOrder};

#[doc(hidden)]
pub use async_trait::async_trait;
