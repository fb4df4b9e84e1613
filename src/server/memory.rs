//! The memory budget (`--memory-budget-bytes`), as an edge proxy's overload
//! manager keeps one: the heap the process holds is counted by the global
//! allocator, and near the budget the proxy sheds new work (new calls get
//! etcd's `ResourceExhausted: etcdserver: too many requests`, new
//! connections are closed) while calls in flight finish. What a client can
//! make the proxy hold (requests being received, answers queued to slow
//! readers, watch queues) is all heap, so one bound covers them.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Heap bytes allocated now, by every part of the process.
static HELD: AtomicUsize = AtomicUsize::new(0);

/// The allocator underneath: the system's. mimalloc took 9% fewer
/// instructions per call but doubled idle RSS and per-connection memory
/// (bench/results/instructions/history.md, the scale curves).
static INNER: System = System;

/// The system allocator, counting the bytes held. One relaxed atomic add per
/// allocation: no lock, nothing else on the hot path.
pub struct CountingAlloc;

// SAFETY: every call is passed to `INNER` unchanged; only a counter is kept.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is the inner allocator's.
        let p = unsafe { INNER.alloc(layout) };
        if !p.is_null() {
            HELD.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is the inner allocator's.
        let p = unsafe { INNER.alloc_zeroed(layout) };
        if !p.is_null() {
            HELD.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is the inner allocator's.
        unsafe { INNER.dealloc(ptr, layout) };
        HELD.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract is the inner allocator's.
        let p = unsafe { INNER.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            HELD.fetch_add(new_size, Ordering::Relaxed);
            HELD.fetch_sub(layout.size(), Ordering::Relaxed);
        }
        p
    }
}

/// Heap bytes the process holds now.
pub fn held_bytes() -> usize {
    HELD.load(Ordering::Relaxed)
}

/// The budget: `0` is off.
#[derive(Debug, Clone, Copy)]
pub struct MemoryBudget {
    /// Bytes of heap past which new work is shed.
    pub bytes: usize,
}

impl MemoryBudget {
    /// Whether new calls and connections are to be shed now.
    pub fn exceeded(&self) -> bool {
        self.bytes != 0 && held_bytes() >= self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::held_bytes;

    #[test]
    fn a_large_allocation_shows_in_the_count_at_once_and_leaves_it_when_freed() {
        // 16 MiB dwarfs what parallel tests allocate meanwhile.
        let before = held_bytes();
        let block = vec![1u8; 16 << 20];
        let during = held_bytes();
        assert!(during >= before + (8 << 20), "{before} -> {during}");
        drop(block);
        let after = held_bytes();
        assert!(after + (8 << 20) <= during, "{during} -> {after}");
    }
}
