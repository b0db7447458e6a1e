import { setTimeout as sleep } from 'node:timers/promises'
import type { BranchRequest, DraftRequest, DraftToken, Drafter } from '../../client/decoding/drafter.js'

/**
 * A drafter made slower on purpose: after the real drafting, it waits `msPerToken` for every
 * token it proposed (and for every level of a branch tree, drafted for all branches at once),
 * as a bigger draft model on its own accelerator would take. The wait does not use the CPU,
 * so the servers on this machine do not feel it. Benchmarks only: it shows how the modes
 * fare when drafting is a real share of a round trip, as in PipeInfer's setting.
 */
export class SlowDrafter implements Drafter {
  readonly #inner: Drafter
  readonly #msPerToken: number
  readonly continueBranches?: (request: BranchRequest) => Promise<number[][]>

  constructor (inner: Drafter, msPerToken: number) {
    this.#inner = inner
    this.#msPerToken = msPerToken
    const branches = inner.continueBranches?.bind(inner)
    if (branches !== undefined) {
      this.continueBranches = async (request) => {
        const out = await branches(request)
        await sleep(this.#msPerToken * request.length)
        return out
      }
    }
  }

  async propose (request: DraftRequest): Promise<DraftToken[]> {
    const out = await this.#inner.propose(request)
    await sleep(this.#msPerToken * out.length)
    return out
  }

  async close (): Promise<void> {
    await this.#inner.close?.()
  }
}
