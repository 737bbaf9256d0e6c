//! Jumping ahead in a xoshiro256** stream.
//!
//! One step of the generator maps its 256-bit state `s` to `T s`, where `T` only shifts,
//! rotates and XORs bits: it is linear over GF(2) (bits, with XOR as the addition), a 256 x 256
//! bit matrix. d steps are `T^d`, which repeated squaring builds from `T` in log2(d) matrix
//! products. Applying it to a state is at most 256 XORs of 256-bit columns, far less than d
//! steps once d is in the thousands. Only the state update has to be linear: the value a draw
//! returns (xoshiro's `**` scrambler of the state) is computed from the state as usual.
//!
//! What for: a dropout mask of n elements is n consecutive draws of one stream. Cut into chunks
//! of d draws, chunk c starts from state `T^(c d) s`, which the caller computes chunk after
//! chunk (one jump each); the chunks themselves can then be drawn in parallel, and the mask is
//! the one the serial loop draws, bit for bit.

use super::Rng;

/// The map "d steps ahead" on xoshiro256** states, stored as the images of the 256 unit states.
#[derive(Clone)]
pub struct Jump {
    /// Column i: the state reached from the state whose only set bit is bit i (word i / 64,
    /// bit i % 64).
    columns: Box<[[u64; 4]; 256]>,
}

impl Jump {
    /// One step: the image of each unit state after one draw.
    fn one_step() -> Jump {
        let mut columns = Box::new([[0u64; 4]; 256]);
        for (i, column) in columns.iter_mut().enumerate() {
            let mut unit = Rng { s: [0; 4] };
            unit.s[i / 64] = 1 << (i % 64);
            unit.next_u64();
            *column = unit.s;
        }
        Jump { columns }
    }

    /// 2^log2 steps: one step, squared log2 times.
    pub fn steps_pow2(log2: u32) -> Jump {
        let mut jump = Jump::one_step();
        for _ in 0..log2 {
            jump = jump.then(&jump);
        }
        jump
    }

    /// Moves `rng` as far ahead as this jump's number of draws would.
    pub fn apply(&self, rng: &mut Rng) {
        rng.s = self.image(&rng.s);
    }

    /// The image of `state`: the XOR of the columns of its set bits.
    fn image(&self, state: &[u64; 4]) -> [u64; 4] {
        let mut out = [0u64; 4];
        for (w, &word) in state.iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                let column = &self.columns[w * 64 + bits.trailing_zeros() as usize];
                out.iter_mut().zip(column).for_each(|(o, c)| *o ^= c);
                bits &= bits - 1; // clear the lowest set bit
            }
        }
        out
    }

    /// This jump, then `next`: column i is `next`'s image of ours.
    fn then(&self, next: &Jump) -> Jump {
        let mut columns = Box::new([[0u64; 4]; 256]);
        for (out, column) in columns.iter_mut().zip(self.columns.iter()) {
            *out = next.image(column);
        }
        Jump { columns }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jump_lands_where_that_many_draws_do() {
        for log2 in [0, 1, 5, 10] {
            let jump = Jump::steps_pow2(log2);
            for seed in [0, 7, 123_456_789] {
                let (mut walked, mut jumped) = (Rng::new(seed), Rng::new(seed));
                (0..1u64 << log2).for_each(|_| {
                    walked.next_u64();
                });
                jump.apply(&mut jumped);
                assert_eq!(walked.s, jumped.s, "2^{log2} steps from seed {seed}");
                assert_eq!(walked.next_u64(), jumped.next_u64());
            }
        }
    }
}
