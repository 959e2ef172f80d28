// @ts-check
// numpy's default random generator, `np.random.default_rng(seed)`, for the two draws site validation makes: the
// patient bootstrap (core/metrics.py `patient_resamples`: `rng.integers(0, n, n)` per resample) and the folds of
// the cross-validation beyond 30 patients (runtime/site_calibration.py `patient_folds`: `rng.permutation(n)`).
//
// Why a port rather than a simpler generator on both sides: every confidence interval of the project (evaluate,
// export, release, `cxr validate`) comes from numpy's generator, and changing it would change every published
// figure. Reproducing numpy's draws here instead changes nothing on the Python side, and the browser's figures equal
// `cxr validate`'s resample for resample. What is reproduced, from numpy 2.x's sources (numpy/random):
// - SeedSequence(seed): the entropy as 32-bit words, hashed into a pool of 4 words (`mix_entropy`), and
//   `generate_state(4, uint64)`;
// - PCG64 (XSL-RR 128/64): `pcg64_set_seed` (state and increment from those 4 words), the 128-bit LCG step, the
//   output function, and `next_uint32`, which hands out the low half of a 64-bit draw and keeps the high half for
//   the next call;
// - `Generator.integers(0, n, size)` (int64): `random_bounded_uint64_fill`, which for a range below 2^32 uses
//   Lemire's multiply-and-reject on 32-bit draws;
// - `Generator.permutation(n)`: a Fisher-Yates shuffle of arange(n), from the end, each swap index drawn by
//   `random_interval` (a bit mask and rejection).
// tests/pwa/test_site_numerics.py checks the draws against numpy itself for several seeds and sizes.

const MASK32 = 0xffffffff;
const MASK64 = (1n << 64n) - 1n;
const MASK128 = (1n << 128n) - 1n;
const PCG_MULTIPLIER = (2549297995355413924n << 64n) + 4865540595714422341n; // PCG_DEFAULT_MULTIPLIER_128

// SeedSequence's hashing constants (numpy/random/bit_generator.pyx).
const INIT_A = 0x43b0d7e5, MULT_A = 0x931e8875, INIT_B = 0x8b51f9dd, MULT_B = 0x58f38ded;
const MIX_MULT_L = 0xca01f9dd, MIX_MULT_R = 0x4973f715, POOL_SIZE = 4;

/** Unsigned 32-bit product (Math.imul is the signed one; >>> 0 reads it back unsigned). */
const mul32 = (a, b) => Math.imul(a, b) >>> 0;

/** `_int_to_uint32_array`: a non-negative integer as little-endian 32-bit words ([0] for 0). */
function entropyWords(seed) {
  let n = BigInt(seed);
  if (n < 0n) throw new Error("a seed must be a non-negative integer");
  const words = [];
  if (n === 0n) words.push(0);
  while (n > 0n) {
    words.push(Number(n & 0xffffffffn));
    n >>= 32n;
  }
  return words;
}

/** SeedSequence(seed).pool: the entropy mixed into 4 words. */
function seedPool(seed) {
  const entropy = entropyWords(seed);
  let hashConst = INIT_A;
  const hashmix = (value) => {
    value = (value ^ hashConst) >>> 0;
    hashConst = mul32(hashConst, MULT_A);
    value = mul32(value, hashConst);
    return (value ^ (value >>> 16)) >>> 0;
  };
  const mix = (x, y) => {
    const result = (mul32(MIX_MULT_L, x) - mul32(MIX_MULT_R, y)) >>> 0;
    return (result ^ (result >>> 16)) >>> 0;
  };
  const pool = [];
  for (let i = 0; i < POOL_SIZE; i++) pool.push(hashmix(i < entropy.length ? entropy[i] : 0));
  for (let src = 0; src < POOL_SIZE; src++) {
    for (let dst = 0; dst < POOL_SIZE; dst++) {
      if (src !== dst) pool[dst] = mix(pool[dst], hashmix(pool[src]));
    }
  }
  for (let src = POOL_SIZE; src < entropy.length; src++) {
    for (let dst = 0; dst < POOL_SIZE; dst++) pool[dst] = mix(pool[dst], hashmix(entropy[src]));
  }
  return pool;
}

/** SeedSequence.generate_state(n, uint64): 2n 32-bit words from the pool, read in pairs (little-endian). */
function generateState64(pool, n) {
  let hashConst = INIT_B;
  const out = [];
  for (let i = 0; i < 2 * n; i += 2) {
    const pair = [];
    for (let j = 0; j < 2; j++) {
      let value = (pool[(i + j) % pool.length] ^ hashConst) >>> 0;
      hashConst = mul32(hashConst, MULT_B);
      value = mul32(value, hashConst);
      pair.push((value ^ (value >>> 16)) >>> 0);
    }
    out.push((BigInt(pair[1]) << 32n) | BigInt(pair[0]));
  }
  return out;
}

export class NumpyRandom {
  /** np.random.default_rng(seed): PCG64 seeded through SeedSequence. */
  constructor(seed = 0) {
    const [s0, s1, i0, i1] = generateState64(seedPool(seed), 4);
    // pcg64_set_seed: the first two words are the state's high and low halves, the next two the increment's;
    // then pcg_setseq_128_srandom_r.
    this.inc = ((((i0 << 64n) | i1) << 1n) | 1n) & MASK128;
    this.state = 0n;
    this.step();
    this.state = (this.state + ((s0 << 64n) | s1)) & MASK128;
    this.step();
    /** @type {number | null} the high half of the last 64-bit draw, not handed out yet (next_uint32's buffer) */
    this.spare = null;
  }

  step() {
    this.state = (this.state * PCG_MULTIPLIER + this.inc) & MASK128;
  }

  /** One 64-bit draw (BigInt): step, then XSL-RR of the new state. */
  next64() {
    this.step();
    const rotation = Number(this.state >> 122n);
    const x = ((this.state >> 64n) ^ this.state) & MASK64;
    return ((x >> BigInt(rotation)) | (x << BigInt((64 - rotation) % 64))) & MASK64;
  }

  /** One 32-bit draw: the low half of a 64-bit draw, then its high half on the next call. */
  next32() {
    if (this.spare !== null) {
      const spare = this.spare;
      this.spare = null;
      return spare;
    }
    const x = this.next64();
    this.spare = Number(x >> 32n);
    return Number(x & 0xffffffffn);
  }

  /** `Generator.integers(0, n, size)` for 1 <= n <= 2^32: Lemire's bounded draw on 32-bit words. */
  integers(n, size) {
    const out = new Array(size);
    const rng = n - 1;
    if (rng === 0) return out.fill(0);
    if (rng > MASK32) throw new Error("integers: ranges beyond 2^32 are not needed here");
    const exclusive = n;
    for (let i = 0; i < size; i++) {
      if (rng === MASK32) {
        out[i] = this.next32();
        continue;
      }
      let m = BigInt(this.next32()) * BigInt(exclusive);
      let leftover = Number(m & 0xffffffffn);
      if (leftover < exclusive) {
        const threshold = (MASK32 - rng) % exclusive;
        while (leftover < threshold) {
          m = BigInt(this.next32()) * BigInt(exclusive);
          leftover = Number(m & 0xffffffffn);
        }
      }
      out[i] = Number(m >> 32n);
    }
    return out;
  }

  /** `random_interval(max)`: uniform on 0..max by masking and rejection (max < 2^32). */
  interval(max) {
    if (max === 0) return 0;
    let mask = max;
    for (const shift of [1, 2, 4, 8, 16]) mask = (mask | (mask >>> shift)) >>> 0;
    let value;
    do value = (this.next32() & mask) >>> 0; while (value > max);
    return value;
  }

  /** `Generator.permutation(n)`: arange(n) shuffled. */
  permutation(n) {
    const out = Array.from({ length: n }, (_, i) => i);
    for (let i = n - 1; i >= 1; i--) {
      const j = this.interval(i);
      [out[i], out[j]] = [out[j], out[i]];
    }
    return out;
  }
}
