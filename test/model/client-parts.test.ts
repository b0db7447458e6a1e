import { describe, expect, it } from 'vitest'
import { Checkpoint } from '../../model/checkpoint.js'
import { ClientParts } from '../../model/client-parts.js'
import { ShapeError } from '../../model/errors.js'
import { BUNDLED_MODEL } from '../helpers/fixtures.js'

describe('ClientParts.logits from a row', () => {
  it('skips the rows before it (empty) and gives the others what the whole call gives', async () => {
    const parts = await ClientParts.load(Checkpoint.open(BUNDLED_MODEL))
    try {
      const hidden = parts.embed([1, 403, 407, 261, 378, 432])
      const whole = await parts.logits(hidden)
      const tail = await parts.logits(hidden, 4)
      expect(tail.map(r => r.length)).toEqual([0, 0, 0, 0, 512, 512])
      for (const t of [4, 5]) {
        let diff = 0
        for (let v = 0; v < 512; v++) diff = Math.max(diff, Math.abs((tail[t]![v] as number) - (whole[t]![v] as number)))
        expect(diff).toBeLessThan(1e-5)
      }
      expect((await parts.logits(hidden, 6)).map(r => r.length)).toEqual([0, 0, 0, 0, 0, 0]) // a prefill: no head at all
      await expect(parts.logits(hidden, 7)).rejects.toThrow(ShapeError)
      await expect(parts.logits(hidden, -1)).rejects.toThrow(ShapeError)
    } finally {
      await parts.release()
    }
  })
})
