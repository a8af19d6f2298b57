//! A named background thread that runs until it is told to stop: the shape
//! shared by the digester and the checkpointer.
//!
//! Owns the thread's handle and its stop channel. The body receives the
//! receiving end: `recv_timeout` on it is both the thread's sleep and its
//! stop signal (the sender is dropped to stop). Stopping, explicitly or by
//! dropping the `Worker`, waits for the body to return.

use std::sync::mpsc::{Receiver, Sender};
use std::thread::JoinHandle;

/// A running (or never started) background thread.
#[derive(Debug, Default)]
pub struct Worker {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// Starts `body` on a thread named `name`.
    ///
    /// # Errors
    /// The thread could not be spawned.
    pub fn spawn(
        name: &str,
        body: impl FnOnce(Receiver<()>) + Send + 'static,
    ) -> std::io::Result<Worker> {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || body(rx))?;
        Ok(Worker {
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    /// A worker that never ran (the feature is off, or spawning failed).
    pub fn idle() -> Worker {
        Worker::default()
    }

    /// Whether a thread runs.
    pub fn running(&self) -> bool {
        self.thread.is_some()
    }

    /// Tells the body to stop and waits until it has returned.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.shutdown();
    }
}
