//! Identical reads made at once, read once: while a read of one key runs,
//! the callers asking for the same key wait, and the next read answers all
//! of them. Dashboards polling the first page of a listing ask the same
//! question many times a second; each asking runs the same statement.
//!
//! A caller is answered only by a read that started after it asked, so it
//! sees every commit that finished before it asked (read-your-writes holds,
//! whichever replica wrote). Callers take a ticket on arrival; a read
//! started when `n` tickets were out answers tickets up to `n`. A read that
//! fails answers only its own caller; the next in line reads again.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Reads of `V` by key `K`, one at a time per key, each answering everyone
/// who asked before it started.
pub(super) struct Coalesced<K, V> {
    keys: Mutex<HashMap<K, Arc<KeyReads<V>>>>,
}

struct KeyReads<V> {
    /// Tickets handed out: callers for this key so far.
    tickets: AtomicU64,
    /// One read at a time (waiters queue in arrival order), and the last
    /// read's answer with the last ticket it answers.
    last: tokio::sync::Mutex<Option<(u64, V)>>,
}

impl<K, V> Default for Coalesced<K, V> {
    fn default() -> Self {
        Coalesced { keys: Mutex::new(HashMap::new()) }
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Coalesced<K, V> {
    /// What `read` returns for `key`, read by this caller or by a read that
    /// started after it asked.
    pub(super) async fn read<E, F: Future<Output = Result<V, E>>>(
        &self,
        key: &K,
        read: impl FnOnce() -> F,
    ) -> Result<V, E> {
        let reads = self.keys.lock().expect("coalesce lock").entry(key.clone()).or_default().clone();
        let reads = Forget { coalesced: self, key, reads };
        let ticket = reads.tickets.fetch_add(1, Ordering::SeqCst) + 1;
        let mut last = reads.last.lock().await;
        if let Some((answered, value)) = &*last
            && *answered >= ticket
        {
            return Ok(value.clone());
        }
        let answers = reads.tickets.load(Ordering::SeqCst);
        let value = read().await?;
        *last = Some((answers, value.clone()));
        Ok(value)
    }
}

/// A caller's hold on its key's reads; the last caller of a key, done or
/// gone, forgets the key.
struct Forget<'a, K: Hash + Eq, V> {
    coalesced: &'a Coalesced<K, V>,
    key: &'a K,
    reads: Arc<KeyReads<V>>,
}

impl<K: Hash + Eq, V> std::ops::Deref for Forget<'_, K, V> {
    type Target = KeyReads<V>;

    fn deref(&self) -> &KeyReads<V> {
        &self.reads
    }
}

impl<K: Hash + Eq, V> Drop for Forget<'_, K, V> {
    fn drop(&mut self) {
        // Others clone the entry only under the map's lock, so the count
        // cannot grow meanwhile: two is the map's and this caller's.
        let mut keys = self.coalesced.keys.lock().expect("coalesce lock");
        if Arc::strong_count(&self.reads) == 2 {
            keys.remove(self.key);
        }
    }
}

impl<V> Default for KeyReads<V> {
    fn default() -> Self {
        KeyReads { tickets: AtomicU64::new(0), last: tokio::sync::Mutex::new(None) }
    }
}

#[cfg(test)]
mod tests {
    //! On one thread, with reads that stay in flight for one yield: the
    //! callers polled while a read is in flight deterministically ask
    //! during it.
    use std::sync::atomic::AtomicUsize;

    use futures_util::future::join_all;
    use tokio::task::yield_now;

    use super::*;

    #[tokio::test]
    async fn callers_waiting_on_a_read_share_the_next_one() {
        let coalesced = Coalesced::<&str, usize>::default();
        let reads = AtomicUsize::new(0);
        let read = || async {
            yield_now().await;
            Ok::<_, ()>(reads.fetch_add(1, Ordering::SeqCst) + 1)
        };
        // The first read runs alone; the nine asking during it share the second.
        let first = coalesced.read(&"page", read);
        let rest = join_all((0..9).map(|_| coalesced.read(&"page", read)));
        let (first, rest) = tokio::join!(first, rest);
        assert_eq!(first, Ok(1));
        assert_eq!(rest, vec![Ok(2); 9]);
        assert_eq!(reads.load(Ordering::SeqCst), 2);
        assert!(coalesced.keys.lock().unwrap().is_empty(), "a key no one waits on is forgotten");
    }

    #[tokio::test]
    async fn a_caller_never_gets_a_read_that_started_before_it_asked() {
        let coalesced = Coalesced::<&str, usize>::default();
        let reads = AtomicUsize::new(0);
        let read = || async {
            let n = reads.fetch_add(1, Ordering::SeqCst) + 1;
            yield_now().await;
            Ok::<_, ()>(n)
        };
        // `late` asks while the first read runs: it must wait for a read of its own.
        let first = coalesced.read(&"page", read);
        let late = coalesced.read(&"page", read);
        assert_eq!(tokio::join!(first, late), (Ok(1), Ok(2)));
    }

    #[tokio::test]
    async fn a_failed_read_answers_only_its_caller() {
        let coalesced = Coalesced::<&str, usize>::default();
        let reads = AtomicUsize::new(0);
        let read = || async {
            yield_now().await;
            match reads.fetch_add(1, Ordering::SeqCst) {
                1 => Err("database away"),
                n => Ok(n),
            }
        };
        let first = coalesced.read(&"page", read);
        let rest = join_all((0..3).map(|_| coalesced.read(&"page", read)));
        let (first, rest) = tokio::join!(first, rest);
        assert_eq!(first, Ok(0));
        // The first waiter's read fails; the next in line reads again for the others.
        assert_eq!(rest, vec![Err("database away"), Ok(2), Ok(2)]);
    }

    #[tokio::test]
    async fn different_keys_do_not_wait_for_each_other() {
        let coalesced = Coalesced::<&str, &str>::default();
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let slow = coalesced.read(&"slow", || async {
            released.await.ok();
            Ok::<_, ()>("slow")
        });
        let fast = async {
            let fast = coalesced.read(&"fast", || async { Ok::<_, ()>("fast") }).await;
            release.send(()).unwrap();
            fast
        };
        assert_eq!(tokio::join!(slow, fast), (Ok("slow"), Ok("fast")));
    }
}
