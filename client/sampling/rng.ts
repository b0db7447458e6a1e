/** A seeded source of uniform random floats in [0, 1). */
export interface Rng {
  /** The next float in [0, 1), with 53 random bits. */
  next (): number
}

/**
 * xoshiro128** seeded through splitmix32: the same seed gives the same sequence on every platform.
 * `seed` is any safe integer (its low and high 32 bits both count).
 */
export function createRng (seed: number): Rng {
  if (!Number.isSafeInteger(seed)) throw new RangeError(`Cannot seed the random generator with ${seed}: it must be a safe integer`)
  let x = (seed >>> 0) ^ Math.imul(Math.floor(seed / 0x1_0000_0000) >>> 0, 0x85EBCA6B)
  const splitmix32 = (): number => {
    x = (x + 0x9E3779B9) | 0
    let z = x
    z = Math.imul(z ^ (z >>> 16), 0x85EBCA6B)
    z = Math.imul(z ^ (z >>> 13), 0xC2B2AE35)
    return (z ^ (z >>> 16)) >>> 0
  }
  let s0 = splitmix32()
  let s1 = splitmix32()
  let s2 = splitmix32()
  let s3 = splitmix32()
  if ((s0 | s1 | s2 | s3) === 0) s0 = 1 // the all-zero state would repeat forever

  const nextUint32 = (): number => {
    const result = Math.imul(rotl(Math.imul(s1, 5), 7), 9) >>> 0
    const t = s1 << 9
    s2 ^= s0
    s3 ^= s1
    s1 ^= s2
    s0 ^= s3
    s2 ^= t
    s3 = rotl(s3, 11)
    return result
  }
  return {
    next: () => {
      const hi = nextUint32() >>> 5 // 27 bits
      const lo = nextUint32() >>> 6 // 26 bits
      return (hi * 67108864 + lo) / 9007199254740992 // (hi * 2^26 + lo) / 2^53
    }
  }
}

function rotl (v: number, k: number): number {
  return (v << k) | (v >>> (32 - k))
}
