import { describe, expect, it } from 'vitest'
import { estimatePrefillMs, hostsOf, MIN_PREFILL_CHUNK, prefillChunkSizes, type PrefillStage } from '../../client/swarm/prefill-plan.js'

const stage = (msPerToken: number, rttMs: number, host: string): PrefillStage => ({ msPerToken, rttMs, hosts: new Set([host]) })
/** Three servers of a big model on machines of their own: 1 ms a token each, 20 ms away. */
const apart = [stage(1, 20, '10.0.0.1'), stage(1, 20, '10.0.0.2'), stage(1, 20, '10.0.0.3')]

describe('prefill plan', () => {
  it('cuts a long prompt for servers on machines of their own, into chunks that cover it in order', () => {
    const sizes = prefillChunkSizes(384, apart, 'auto')
    expect(sizes.length).toBeGreaterThan(1)
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(384)
    expect(Math.min(...sizes)).toBeGreaterThanOrEqual(MIN_PREFILL_CHUNK)
    expect(estimatePrefillMs(apart, 384, sizes.length)).toBeLessThan(0.9 * estimatePrefillMs(apart, 384, 1))
  })

  it('keeps a run whole where chunks would not pay: servers sharing a host, fast compute, short prompts, unknown speeds', () => {
    expect(prefillChunkSizes(384, [stage(1, 20, '127.0.0.1'), stage(1, 20, '127.0.0.1'), stage(1, 20, '10.0.0.3')], 'auto')).toEqual([384])
    expect(prefillChunkSizes(384, apart.map(s => ({ ...s, msPerToken: 0.001 })), 'auto')).toEqual([384]) // a tiny model: round trips dominate
    expect(prefillChunkSizes(40, apart, 'auto')).toEqual([40])
    expect(prefillChunkSizes(384, apart.map(s => ({ ...s, msPerToken: 0 })), 'auto')).toEqual([384])
    expect(prefillChunkSizes(384, apart.slice(0, 1), true)).toEqual([384]) // one hop: nothing to overlap
    expect(prefillChunkSizes(384, apart, false)).toEqual([384])
  })

  it('true cuts even where auto would not: two chunks a hop', () => {
    const shared = apart.map(s => ({ ...s, hosts: new Set(['127.0.0.1']) }))
    expect(prefillChunkSizes(384, shared, true)).toEqual([64, 64, 64, 64, 64, 64])
    expect(prefillChunkSizes(100, shared, true)).toEqual([34, 34, 32])
  })

  it('reads hosts from multiaddrs', () => {
    expect([...hostsOf(['/ip4/10.1.2.3/tcp/4001/p2p/x', '/ip6/::1/tcp/1', '/dns4/node.example/tcp/1', '/ip4/0.0.0.0/tcp/1', '/p2p-circuit'])]).toEqual(['10.1.2.3', '::1', 'node.example'])
  })
})
