//! Helpers for splitting work over the thread pool with a fixed, thread-count-independent split.
//!
//! [`parallel_for`](super::pool::parallel_for) hands out task indices; a kernel maps index i to a
//! fixed range of its output, so *what* each task computes (and in which order it sums) never
//! depends on how many threads run it, and results are bitwise the same with 1 or 2 threads.
//! The tasks write disjoint parts of one output buffer, which safe Rust cannot express through a
//! shared closure; [`DisjointMut`] is the one place that does it, with the disjointness promise
//! made at each `unsafe` call.

use super::pool::parallel_for;
use std::marker::PhantomData;
use std::ops::Range;

/// Elements per task of the elementwise kernels: large enough that a task outweighs the pool's
/// hand-off (~1 us), small enough that 2 threads balance on tensors of a few hundred thousand.
pub const CHUNK: usize = 16 * 1024;

/// A mutable slice that parallel tasks may write through, each to its own sub-range.
pub struct DisjointMut<'a, T> {
    ptr: *mut T,
    len: usize,
    _borrow: PhantomData<&'a mut [T]>,
}

// SAFETY: access goes through `range`, whose callers promise disjoint ranges across threads.
unsafe impl<T: Send> Sync for DisjointMut<'_, T> {}
unsafe impl<T: Send> Send for DisjointMut<'_, T> {}

impl<'a, T> DisjointMut<'a, T> {
    pub fn new(slice: &'a mut [T]) -> Self {
        DisjointMut {
            ptr: slice.as_mut_ptr(),
            len: slice.len(),
            _borrow: PhantomData,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The sub-slice `r` (bounds-checked).
    ///
    /// # Safety
    /// No other live reference obtained from this `DisjointMut` may overlap `r`.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn range(&self, r: Range<usize>) -> &'a mut [T] {
        assert!(
            r.start <= r.end && r.end <= self.len,
            "DisjointMut: range {r:?} outside 0..{}",
            self.len
        );
        std::slice::from_raw_parts_mut(self.ptr.add(r.start), r.end - r.start)
    }
}

impl<'a, T> DisjointMut<'a, T> {
    /// `range(r)`, or an empty slice when this buffer is empty (an output nobody needs).
    ///
    /// # Safety
    /// As for [`DisjointMut::range`].
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn range_or_empty(&self, r: Range<usize>) -> &'a mut [T] {
        if self.len == 0 {
            self.range(0..0)
        } else {
            self.range(r)
        }
    }
}

/// Runs `f(range)` for consecutive ranges of `chunk` elements covering `0..len` (the last may be
/// shorter), spread over the pool.
pub fn for_each_chunk(len: usize, chunk: usize, f: impl Fn(Range<usize>) + Sync) {
    let chunk = chunk.max(1);
    let tasks = len.div_ceil(chunk);
    parallel_for(tasks, &|i| f(i * chunk..((i + 1) * chunk).min(len)));
}
