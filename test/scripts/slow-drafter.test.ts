import { describe, expect, it } from 'vitest'
import { NgramDrafter } from '../../client/decoding/index.js'
import { Sampler } from '../../client/sampling/index.js'
import { SlowDrafter } from '../../scripts/lib/slow-drafter.js'

describe('SlowDrafter (bench-speculation --draft-cost-ms)', () => {
  const context = [5, 6, 7, 8, 5, 6, 7, 8, 5, 6]
  const request = { context, maxTokens: 4, sampler: new Sampler({ temperature: 0 }) }

  it('proposes what the drafter it wraps proposes, and waits its cost per token', async () => {
    const plain = await new NgramDrafter().propose(request)
    expect(plain.length).toBe(4)
    const t0 = performance.now()
    const slow = await new SlowDrafter(new NgramDrafter(), 10).propose(request)
    expect(performance.now() - t0).toBeGreaterThanOrEqual(39)
    expect(slow.map(d => d.token)).toEqual(plain.map(d => d.token))
  })

  it('offers branch drafting only when the wrapped drafter has it', () => {
    expect(new SlowDrafter(new NgramDrafter(), 1).continueBranches).toBeUndefined()
  })
})
