//! The deadline of the call being served, carried in a task-local so that the
//! store can end a database operation when the caller has stopped waiting,
//! without threading it through every function.

use std::future::Future;

use tokio::time::Instant;

tokio::task_local! {
    static CALL_DEADLINE: Instant;
}

/// Runs `work` with `deadline` as the current call's deadline.
pub async fn scope<F: Future>(deadline: Instant, work: F) -> F::Output {
    CALL_DEADLINE.scope(deadline, work).await
}

/// The current call's deadline, if it has one.
pub fn current() -> Option<Instant> {
    CALL_DEADLINE.try_with(|deadline| *deadline).ok()
}

/// The earlier of the current call's deadline and `now + budget`.
pub fn within(budget: std::time::Duration) -> Instant {
    let own = Instant::now() + budget;
    current().map_or(own, |call| call.min(own))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn the_earlier_deadline_wins() {
        assert!(current().is_none());
        let soon = Instant::now() + Duration::from_millis(10);
        scope(soon, async {
            assert_eq!(current(), Some(soon));
            assert_eq!(within(Duration::from_secs(60)), soon);
            assert!(within(Duration::ZERO) <= soon);
        })
        .await;
        assert!(current().is_none());
    }
}
