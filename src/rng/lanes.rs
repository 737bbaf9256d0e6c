//! Several xoshiro256** streams stepped side by side.
//!
//! One stream is a chain: each draw needs the state the previous one left, so a single stream
//! runs at the latency of that chain (~1.4 ns a draw on the machines here). [`Lanes`] holds
//! [`LANES`] independent streams with each state word stored lane by lane, so one step of all
//! of them is the same few shifts, rotations and XORs on arrays that the compiler maps onto
//! vector registers (8 x 64 bits: one AVX-512 register per state word), several times the
//! throughput of one stream. Lane l draws exactly what `streams[l]` would.
//!
//! What for: the chunks of a dropout mask are independent pieces of one stream (see
//! `jump.rs`); eight of them are drawn at once.

use super::Rng;

/// Streams stepped together.
pub const LANES: usize = 8;

/// [`LANES`] xoshiro256** states, word by word: `s1[l]` is word 1 of lane l.
pub struct Lanes {
    s0: [u64; LANES],
    s1: [u64; LANES],
    s2: [u64; LANES],
    s3: [u64; LANES],
}

impl Lanes {
    /// Lane l continues `streams[l]`; lanes past `streams.len()` hold the all-zero state (a fixed
    /// point of the generator: they draw zeros that nobody reads).
    pub fn new(streams: &[Rng]) -> Lanes {
        assert!(streams.len() <= LANES, "Lanes: at most {LANES} streams");
        let word = |w: usize| std::array::from_fn(|l| streams.get(l).map_or(0, |r| r.s[w]));
        Lanes {
            s0: word(0),
            s1: word(1),
            s2: word(2),
            s3: word(3),
        }
    }

    /// The next draw of every lane as [`Rng::next_u24`] returns it (the steps of
    /// [`Rng::next_u64`], lane by lane). Inlined, so that a caller compiled for wide vectors
    /// steps all lanes in them, and can use the draws while they are in registers.
    #[inline(always)]
    #[allow(clippy::needless_range_loop)] // one lane index over five arrays is the point
    pub fn next_u24(&mut self) -> [u64; LANES] {
        let mut row = [0u64; LANES];
        for l in 0..LANES {
            row[l] = self.s1[l].wrapping_mul(5).rotate_left(7).wrapping_mul(9) >> 40;
            let t = self.s1[l] << 17;
            self.s2[l] ^= self.s0[l];
            self.s3[l] ^= self.s1[l];
            self.s1[l] ^= self.s2[l];
            self.s0[l] ^= self.s3[l];
            self.s2[l] ^= t;
            self.s3[l] = self.s3[l].rotate_left(45);
        }
        row
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_lane_draws_what_its_stream_draws() {
        let streams: Vec<Rng> = (0..5).map(Rng::new).collect();
        let mut lanes = Lanes::new(&streams);
        let mut serial = streams.clone();
        for _ in 0..1000 {
            let row = lanes.next_u24();
            for (l, stream) in serial.iter_mut().enumerate() {
                assert_eq!(row[l], stream.next_u24(), "lane {l}");
            }
            assert!(row[5..].iter().all(|&d| d == 0), "unused lanes draw zeros");
        }
    }
}
