//! Input generation: valid seeds, mutated. Deterministic for a given RNG state.
//!
//! Each input starts from a seed (or from an earlier input the parser accepted) and goes
//! through one to eight stacked mutations: bit flips, byte and integer overwrites with
//! boundary values, inserted and deleted ranges, truncation, length fields and varints
//! rewritten, ranges duplicated, two inputs spliced, and dictionary tokens dropped in. A few
//! inputs are plain random bytes.

use rand::rngs::StdRng;
use rand::Rng;

/// Inputs never grow past this; parsers are fed frames, not files.
pub const MAX_LEN: usize = 4096;
/// Accepted inputs kept as further starting points.
const MAX_KEPT: usize = 512;

/// Values that sit on boundaries: lengths, counts, sign bits, the 20- and 24-bit limits.
const INTERESTING: [u32; 30] = [
    0,
    1,
    2,
    3,
    4,
    7,
    8,
    15,
    16,
    31,
    32,
    33,
    63,
    64,
    127,
    128,
    255,
    256,
    0x7FFF,
    0x8000,
    0xFFFF,
    0x1_0000,
    0xF_FFFF,
    0x10_0000,
    0xFF_FFFF,
    0x100_0000,
    0x7FFF_FFFF,
    0x8000_0000,
    0xFFFF_FFFE,
    0xFFFF_FFFF,
];

/// Seeds, a dictionary, and the inputs the target accepted so far.
#[derive(Debug)]
pub struct Mutator {
    seeds: Vec<Vec<u8>>,
    kept: Vec<Vec<u8>>,
    dictionary: &'static [&'static [u8]],
}

impl Mutator {
    /// A mutator over `seeds` (at least one) and `dictionary`.
    pub fn new(seeds: Vec<Vec<u8>>, dictionary: &'static [&'static [u8]]) -> Self {
        let seeds = if seeds.is_empty() {
            vec![Vec::new()]
        } else {
            seeds
        };
        Self {
            seeds,
            kept: Vec::new(),
            dictionary,
        }
    }

    /// The next input.
    pub fn generate(&self, rng: &mut StdRng) -> Vec<u8> {
        if rng.gen_ratio(1, 32) {
            let len = if rng.gen_bool(0.75) {
                rng.gen_range(0..=64)
            } else {
                rng.gen_range(0..=1024)
            };
            let mut data = vec![0u8; len];
            rng.fill(&mut data[..]);
            return data;
        }
        let mut data = self.pick(rng).to_vec();
        let mut rounds = 1;
        while rounds < 8 && rng.gen_bool(0.5) {
            rounds += 1;
        }
        for _ in 0..rounds {
            self.mutate(&mut data, rng);
        }
        data.truncate(MAX_LEN);
        data
    }

    /// Keeps an accepted input as a starting point (some of them: the pool stays varied).
    pub fn keep(&mut self, input: &[u8], rng: &mut StdRng) {
        if !rng.gen_ratio(1, 8) {
            return;
        }
        if self.kept.len() < MAX_KEPT {
            self.kept.push(input.to_vec());
        } else {
            let slot = rng.gen_range(0..MAX_KEPT);
            self.kept[slot] = input.to_vec();
        }
    }

    fn pick(&self, rng: &mut StdRng) -> &[u8] {
        if !self.kept.is_empty() && rng.gen_ratio(1, 3) {
            &self.kept[rng.gen_range(0..self.kept.len())]
        } else {
            &self.seeds[rng.gen_range(0..self.seeds.len())]
        }
    }

    /// One mutation, in place.
    fn mutate(&self, data: &mut Vec<u8>, rng: &mut StdRng) {
        if data.is_empty() {
            insert_random(data, 0, rng);
            return;
        }
        let len = data.len();
        let pos = rng.gen_range(0..len);
        match rng.gen_range(0..16) {
            0 => data[pos] ^= 1 << rng.gen_range(0..8),
            1 => data[pos] = rng.gen(),
            2 => data[pos] = interesting(rng) as u8,
            3 => {
                let delta = rng.gen_range(1..=16u8);
                data[pos] = if rng.gen_bool(0.5) {
                    data[pos].wrapping_add(delta)
                } else {
                    data[pos].wrapping_sub(delta)
                };
            }
            4 => {
                // A length or count field: 1 to 4 bytes, big endian, a boundary value or one
                // near the bytes that follow.
                let width = rng.gen_range(1..=4);
                let value = if rng.gen_bool(0.5) {
                    interesting(rng)
                } else {
                    let left = (len - pos) as i64 + rng.gen_range(-4..=4);
                    left.clamp(0, i64::from(u32::MAX)) as u32
                };
                let bytes = value.to_be_bytes();
                overwrite(data, pos, &bytes[4 - width..]);
            }
            5 => {
                // A protobuf varint: a key or a length, sometimes overlong.
                let mut varint = encode_varint(u64::from(interesting(rng)));
                if rng.gen_ratio(1, 4) {
                    varint = vec![0xFF; rng.gen_range(1..=11)];
                }
                if rng.gen_bool(0.5) {
                    overwrite(data, pos, &varint);
                } else {
                    data.splice(pos..pos, varint);
                }
            }
            6 => insert_random(data, pos, rng),
            7 => {
                let count = rng.gen_range(1..=128);
                let byte = if rng.gen_bool(0.5) {
                    data[pos]
                } else {
                    rng.gen()
                };
                data.splice(pos..pos, std::iter::repeat_n(byte, count));
            }
            8 => {
                let count = rng.gen_range(1..=(len - pos).min(32));
                data.drain(pos..pos + count);
            }
            9 => data.truncate(pos),
            10 => {
                let (start, count) = range(len, rng);
                let copy = data[start..start + count].to_vec();
                let at = rng.gen_range(0..=len);
                data.splice(at..at, copy);
            }
            11 => {
                let (start, count) = range(len, rng);
                let copy = data[start..start + count].to_vec();
                overwrite(data, pos, &copy);
            }
            12 => {
                let other = self.pick(rng);
                let from = rng.gen_range(0..=other.len());
                data.truncate(pos);
                data.extend_from_slice(&other[from..]);
            }
            13 | 14 if !self.dictionary.is_empty() => {
                let token = self.dictionary[rng.gen_range(0..self.dictionary.len())];
                if rng.gen_bool(0.5) {
                    data.splice(pos..pos, token.iter().copied());
                } else {
                    overwrite(data, pos, token);
                }
            }
            _ => {
                let other = rng.gen_range(0..len);
                data.swap(pos, other);
            }
        }
    }
}

fn interesting(rng: &mut StdRng) -> u32 {
    let value = INTERESTING[rng.gen_range(0..INTERESTING.len())];
    match rng.gen_range(0..4) {
        0 => value.wrapping_add(1),
        1 => value.wrapping_sub(1),
        _ => value,
    }
}

fn insert_random(data: &mut Vec<u8>, pos: usize, rng: &mut StdRng) {
    let mut bytes = vec![0u8; rng.gen_range(1..=16)];
    rng.fill(&mut bytes[..]);
    data.splice(pos..pos, bytes);
}

/// Writes `bytes` at `pos`, growing `data` when they run past its end.
fn overwrite(data: &mut Vec<u8>, pos: usize, bytes: &[u8]) {
    let end = pos + bytes.len();
    if end > data.len() {
        data.resize(end, 0);
    }
    data[pos..end].copy_from_slice(bytes);
}

/// A non-empty range inside `len` bytes, mostly short.
fn range(len: usize, rng: &mut StdRng) -> (usize, usize) {
    let start = rng.gen_range(0..len);
    let max = (len - start).min(if rng.gen_bool(0.8) { 16 } else { 512 });
    (start, rng.gen_range(1..=max))
}

/// The protobuf varint encoding of `value`.
pub fn encode_varint(mut value: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(10);
    loop {
        let byte = (value & 0x7F) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_inputs() {
        let make = || Mutator::new(vec![b"seed one".to_vec(), vec![0; 40]], &[b"tok"]);
        let (a, b) = (make(), make());
        let (mut ra, mut rb) = (StdRng::seed_from_u64(7), StdRng::seed_from_u64(7));
        for _ in 0..2000 {
            let (x, y) = (a.generate(&mut ra), b.generate(&mut rb));
            assert_eq!(x, y);
            assert!(x.len() <= MAX_LEN);
        }
    }

    #[test]
    fn an_empty_seed_list_still_generates() {
        let m = Mutator::new(Vec::new(), &[]);
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..100 {
            let _ = m.generate(&mut rng);
        }
    }

    #[test]
    fn varints_are_protobufs() {
        assert_eq!(encode_varint(0), [0]);
        assert_eq!(encode_varint(300), [0xAC, 0x02]);
        assert_eq!(encode_varint(u64::MAX).len(), 10);
    }
}
