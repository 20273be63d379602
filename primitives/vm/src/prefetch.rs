//! Block read-ahead (paper §3.4): a second thread fetches the model's weight blocks in order
//! while the interpreter computes, so a slow source (a disk, a node over RPC) costs the time its
//! reads do not overlap rather than all of it. Blocks are laid out layer by layer, so reading in
//! index order is reading in the order the program asks.

use alloc::borrow::Cow;
use alloc::vec::Vec;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};

use crate::weights::WeightSource;

/// A [`WeightSource`] fed by a reader thread; `block` waits until the reader has fetched it and
/// takes it, so memory is handed back as the program goes. A block asked for again (an LSTM
/// reads its weights at every step) is read from the source again, as without read-ahead.
pub struct ReadAhead<'s, S> {
    source: &'s S,
    slots: Vec<Mutex<Option<Option<Vec<u8>>>>>,
    fetched: Mutex<usize>,
    arrived: Condvar,
    stop: AtomicBool,
}

impl<S: WeightSource + Sync> ReadAhead<'_, S> {
    /// Reads blocks `0..` in order until every slot is filled or the run has ended.
    fn read(&self) {
        for (index, slot) in self.slots.iter().enumerate() {
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            let block = self.source.block(index as u32).map(Cow::into_owned);
            if let Ok(mut slot) = slot.lock() {
                *slot = Some(block);
            }
            if let Ok(mut fetched) = self.fetched.lock() {
                *fetched = index + 1;
            }
            self.arrived.notify_all();
        }
    }
}

impl<S: WeightSource + Sync> WeightSource for ReadAhead<'_, S> {
    fn block(&self, index: u32) -> Option<Cow<'_, [u8]>> {
        let Some(slot) = self.slots.get(index as usize) else {
            return self.source.block(index);
        };
        {
            // The reader fills slots in order and never stops while the run is going.
            let mut fetched = self.fetched.lock().ok()?;
            while *fetched <= index as usize {
                fetched = self.arrived.wait(fetched).ok()?;
            }
        }
        match slot.lock().ok()?.take() {
            Some(block) => block.map(Cow::Owned),
            None => self.source.block(index),
        }
    }
}

/// Runs `run` with blocks `0..blocks` of `source` read ahead on another thread; the reader stops
/// as soon as `run` returns.
pub fn with_read_ahead<S: WeightSource + Sync, R>(
    source: &S,
    blocks: u32,
    run: impl FnOnce(&ReadAhead<'_, S>) -> R,
) -> R {
    let ahead = ReadAhead {
        source,
        slots: (0..blocks).map(|_| Mutex::new(None)).collect(),
        fetched: Mutex::new(0),
        arrived: Condvar::new(),
        stop: AtomicBool::new(false),
    };
    std::thread::scope(|scope| {
        scope.spawn(|| ahead.read());
        let result = run(&ahead);
        ahead.stop.store(true, Ordering::Relaxed);
        result
    })
}
