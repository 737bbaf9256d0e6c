//! Helpers for splitting work over the thread pool with a fixed, thread-count-independent split.
//!
//! [`parallel_for`] hands out task indices; a kernel maps index i to a
//! fixed range of its output, so *what* each task computes (and in which order it sums) never
//! depends on how many threads run it, and results are bitwise the same with 1 or 2 threads.
//! The tasks write disjoint parts of one output buffer, which safe Rust cannot express through a
//! shared closure; [`DisjointMut`] is the one place that does it, with the disjointness promise
//! made at each `unsafe` call.

use super::pool::parallel_for;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
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

/// A new vector of `len` floats made by `fill(range, out)` over consecutive chunks of `chunk`
/// elements on the pool (as [`for_each_chunk`]), with no zero-fill pass first: `out` is the
/// vector's not yet initialised `range`.
///
/// Why: `vec![0.0; len]` is a memset on the calling thread before the pool starts; for the
/// outputs of SwiGLU and its gradients that was a pass over memory per op, on one thread while
/// the other waited (BENCHMARKS.md, "Outputs written without a zero-fill first").
///
/// # Safety
/// `fill` must write every element of its `out` (or panic).
pub unsafe fn new_vec_in_chunks(
    len: usize,
    chunk: usize,
    fill: impl Fn(Range<usize>, &mut [MaybeUninit<f32>]) + Sync,
) -> Vec<f32> {
    let (v, _) = new_vec_pair_in_chunks(len, chunk, (true, false), |r, a, _| fill(r, a));
    v
}

/// [`new_vec_in_chunks`] for two outputs filled in one pass, each made only if `wanted`
/// (otherwise empty, and `fill` gets an empty slice for it).
///
/// # Safety
/// `fill` must write every element of each non-empty output (or panic).
pub unsafe fn new_vec_pair_in_chunks(
    len: usize,
    chunk: usize,
    wanted: (bool, bool),
    fill: impl Fn(Range<usize>, &mut [MaybeUninit<f32>], &mut [MaybeUninit<f32>]) + Sync,
) -> (Vec<f32>, Vec<f32>) {
    let lens = (
        if wanted.0 { len } else { 0 },
        if wanted.1 { len } else { 0 },
    );
    let (mut a, mut b) = (Vec::with_capacity(lens.0), Vec::with_capacity(lens.1));
    {
        let slots_a = DisjointMut::new(&mut a.spare_capacity_mut()[..lens.0]);
        let slots_b = DisjointMut::new(&mut b.spare_capacity_mut()[..lens.1]);
        for_each_chunk(len, chunk, |r| {
            // SAFETY: `for_each_chunk` hands out disjoint ranges; an unwanted output is empty.
            let (out_a, out_b) = unsafe {
                (
                    slots_a.range_or_empty(r.clone()),
                    slots_b.range_or_empty(r.clone()),
                )
            };
            fill(r, out_a, out_b);
        });
    }
    // SAFETY: every chunk of each wanted output was written (the caller's promise; a panic in
    // a task propagates out of `for_each_chunk` before these lines).
    unsafe {
        a.set_len(lens.0);
        b.set_len(lens.1);
    }
    (a, b)
}

/// A slice of initialised floats viewed as slots to write: sound, since only initialised
/// values are ever written through the view (what kernels writing `MaybeUninit` outputs do).
pub fn as_slots(s: &mut [f32]) -> &mut [MaybeUninit<f32>] {
    // SAFETY: MaybeUninit<f32> has f32's layout; the view never de-initialises an element.
    unsafe { &mut *(s as *mut [f32] as *mut [MaybeUninit<f32>]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each element is its index (or its negative in the second output), at chunk sizes that do
    /// and do not divide the length, with either output unwanted: a chunk written at the wrong
    /// offset or an unwanted output not left empty shows.
    #[test]
    fn new_vectors_hold_what_each_chunk_wrote_at_its_place() {
        for (len, chunk) in [(0, 4), (1, 4), (10, 3), (64, 16), (1000, 7)] {
            let index = |i: usize| i as f32;
            // SAFETY: every slot of each output is written.
            let v = unsafe {
                new_vec_in_chunks(len, chunk, |r, out| {
                    for (o, i) in out.iter_mut().zip(r) {
                        o.write(index(i));
                    }
                })
            };
            assert_eq!(
                v,
                (0..len).map(index).collect::<Vec<_>>(),
                "len {len} chunk {chunk}"
            );
            for wanted in [(true, true), (true, false), (false, true)] {
                // SAFETY: as above, for each non-empty output.
                let (a, b) = unsafe {
                    new_vec_pair_in_chunks(len, chunk, wanted, |r, a, b| {
                        assert!(a.is_empty() || a.len() == r.len());
                        for (o, i) in a.iter_mut().zip(r.clone()) {
                            o.write(index(i));
                        }
                        for (o, i) in b.iter_mut().zip(r) {
                            o.write(-index(i));
                        }
                    })
                };
                let want = |on: bool, sign: f32| -> Vec<f32> {
                    if on {
                        (0..len).map(|i| sign * index(i)).collect()
                    } else {
                        Vec::new()
                    }
                };
                assert_eq!(a, want(wanted.0, 1.0), "{wanted:?}");
                assert_eq!(b, want(wanted.1, -1.0), "{wanted:?}");
            }
        }
    }
}
