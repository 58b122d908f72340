//! Schedule: the job vocabulary ([`task`]) and the pure rules that decide
//! when a job runs and whether it may ([`rules`]: retry backoff, the
//! circuit breaker, schedule slots). The worker (`crate::worker`) carries
//! them out.

pub mod rules;
pub mod task;
