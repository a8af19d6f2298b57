//! Locks that survive a panic elsewhere.
//!
//! Every lock of the daemon guards data that stays consistent between
//! statements (a map, a counter set, a setting), so a thread that panicked
//! while holding one leaves nothing half-done: the next user takes the data
//! as it is instead of propagating the panic to every later request.

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// `lock()`/`read()`/`write()` that ignore poisoning (see the module doc).
pub trait Recover<T: ?Sized> {
    /// The guard for reading (a `Mutex`'s only guard).
    type Read<'a>
    where
        Self: 'a;
    /// The guard for writing.
    type Write<'a>
    where
        Self: 'a;
    /// Shared access.
    fn shared(&self) -> Self::Read<'_>;
    /// Exclusive access.
    fn exclusive(&self) -> Self::Write<'_>;
}

impl<T: ?Sized> Recover<T> for Mutex<T> {
    type Read<'a>
        = MutexGuard<'a, T>
    where
        T: 'a;
    type Write<'a>
        = MutexGuard<'a, T>
    where
        T: 'a;
    fn shared(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn exclusive(&self) -> MutexGuard<'_, T> {
        self.shared()
    }
}

impl<T: ?Sized> Recover<T> for RwLock<T> {
    type Read<'a>
        = RwLockReadGuard<'a, T>
    where
        T: 'a;
    type Write<'a>
        = RwLockWriteGuard<'a, T>
    where
        T: 'a;
    fn shared(&self) -> RwLockReadGuard<'_, T> {
        self.read().unwrap_or_else(|p| p.into_inner())
    }
    fn exclusive(&self) -> RwLockWriteGuard<'_, T> {
        self.write().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_lock_still_opens() {
        let m = std::sync::Arc::new(Mutex::new(1));
        let m2 = m.clone();
        let _ = std::thread::spawn(move || {
            let _g = m2.lock().unwrap();
            panic!("poison");
        })
        .join();
        assert!(m.is_poisoned());
        *m.exclusive() += 1;
        assert_eq!(*m.shared(), 2);
        let r = RwLock::new(3);
        *r.exclusive() += 1;
        assert_eq!(*r.shared(), 4);
    }
}
