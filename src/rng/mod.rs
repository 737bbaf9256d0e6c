//! A small deterministic random number generator (SplitMix64 seeding a xoshiro256** stream).
//! Every random choice in the project (init, dropout masks, shuffles, noise) goes through it, so a
//! seed fixes a run bit for bit. No `rand` crate: this is 40 lines and we know what it does.
//! `jump.rs`: skipping ahead in a stream, so that long runs of draws (dropout masks) can be
//! made in parallel and still be the stream's own draws; `lanes.rs`: several streams stepped
//! side by side in vector registers.

mod jump;
mod lanes;

pub use jump::Jump;
pub use lanes::{Lanes, LANES};

#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// A generator whose whole stream is fixed by `seed`.
    pub fn new(seed: u64) -> Rng {
        // SplitMix64 spreads any seed (even 0) over the 256-bit xoshiro state.
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Rng {
            s: [next(), next(), next(), next()],
        }
    }

    /// Next 64 random bits (xoshiro256**).
    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1) with 24 bits of precision (exactly representable in f32).
    pub fn uniform(&mut self) -> f32 {
        self.next_u24() as f32 * (1.0 / (1u64 << 24) as f32)
    }

    /// The 24 random bits [`Rng::uniform`] is made of: `uniform() == next_u24() / 2^24`.
    pub fn next_u24(&mut self) -> u64 {
        self.next_u64() >> 40
    }

    /// The integer form of `uniform() < p`, for loops that draw millions of decisions (dropout
    /// masks): `uniform()` is exactly `v / 2^24` with `v = next_u24()`, so `uniform() < p` holds
    /// exactly when `v < ceil(p * 2^24)` (p * 2^24 is exact in f64). Same decisions, bit for bit,
    /// without an int-to-float conversion per draw. p is clamped to [0, 1].
    pub fn uniform_below_threshold(p: f32) -> u64 {
        (f64::from(p.clamp(0.0, 1.0)) * (1u64 << 24) as f64).ceil() as u64
    }

    /// Uniform integer in 0..n (n > 0), by rejection so that every value is equally likely.
    pub fn below(&mut self, n: usize) -> usize {
        assert!(n > 0, "Rng::below(0)");
        let n = n as u64;
        let zone = u64::MAX - (u64::MAX % n);
        loop {
            let r = self.next_u64();
            if r < zone {
                return (r % n) as usize;
            }
        }
    }

    /// Standard normal sample (Box-Muller; the second value is discarded for simplicity).
    pub fn normal(&mut self) -> f32 {
        let u1 = ((self.next_u64() >> 11) as f64 + 1.0) * (1.0 / (1u64 << 53) as f64); // (0, 1]
        let u2 = (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    }

    /// The seed of an independent stream number `stream` under `seed` (e.g. one dropout mask per
    /// layer and projection): the first output of a generator seeded by both, so nearby
    /// (seed, stream) pairs give unrelated streams.
    pub fn stream_seed(seed: u64, stream: u64) -> u64 {
        Rng::new(seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15)).next_u64()
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, xs: &mut [T]) {
        for i in (1..xs.len()).rev() {
            let j = self.below(i + 1);
            xs.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_moments_are_sane() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        assert!((0..100).all(|_| a.next_u64() == b.next_u64()));
        let mut r = Rng::new(1);
        let n = 100_000;
        let xs: Vec<f32> = (0..n).map(|_| r.normal()).collect();
        let mean = xs.iter().sum::<f32>() / n as f32;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / n as f32;
        assert!(
            mean.abs() < 0.02 && (var - 1.0).abs() < 0.03,
            "mean {mean} var {var}"
        );
        let us: Vec<f32> = (0..n).map(|_| r.uniform()).collect();
        assert!(us.iter().all(|&u| (0.0..1.0).contains(&u)));
    }

    #[test]
    fn the_integer_threshold_decides_exactly_as_uniform_below_p() {
        // Typical dropout rates, p whose p * 2^24 is an integer (the boundary draw itself), the
        // smallest and largest f32 steps, and the ends.
        let exact = 3.0 / (1u64 << 24) as f32;
        for p in [
            0.05f32,
            0.1,
            0.3,
            0.5,
            0.9,
            exact,
            f32::MIN_POSITIVE,
            1.0 - f32::EPSILON,
            0.0,
        ] {
            let t = Rng::uniform_below_threshold(p);
            let (mut a, mut b) = (Rng::new(3), Rng::new(3));
            for _ in 0..20_000 {
                assert_eq!(a.uniform() < p, b.next_u24() < t, "p {p}");
            }
            // The draws right at the threshold, where a rounding error would show.
            for v in [t.saturating_sub(1), t, t + 1] {
                let u = v as f32 / (1u64 << 24) as f32;
                assert_eq!(u < p, v < t, "p {p}, v {v}");
            }
        }
    }
}
