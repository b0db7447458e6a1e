import { describe, expect, it } from 'vitest'
import { formatMetrics, MetricsEndpoint } from '../../node/metrics-endpoint.js'
import type { ServerInfo } from '../../protocol/index.js'

const INFO: ServerInfo = {
  peerId: '12D3KooWabc',
  addrs: ['/ip4/127.0.0.1/tcp/4001'],
  modelId: 'my "model"\\v2',
  numBlocks: 12,
  start: 4,
  end: 8,
  state: 'online',
  throughput: { decodeTokensPerSec: 512.5, prefillTokensPerSec: 9000 },
  freeCacheTokens: 16000,
  openSessions: 3,
  maxSessions: 16,
  device: 'cpu',
  version: '0.1.0',
  blockHashes: [],
  updatedAt: 0,
  metrics: { runsComputed: 120, runsDroppedBeforeStart: 7, runsAbortedMidRun: 1, runsDroppedLate: 2, runsRefused: 0, queuedRuns: 4, runsBatched: 30 },
  quantization: 'int8'
}

/** name{labels} -> value, from the exposition text (HELP and TYPE lines checked on the way). */
function samples (text: string): Map<string, number> {
  const out = new Map<string, number>()
  const typed = new Set<string>()
  for (const line of text.trimEnd().split('\n')) {
    const type = /^# TYPE (\w+) (gauge|counter)$/.exec(line)
    if (type !== null) { typed.add(type[1] as string); continue }
    if (line.startsWith('# HELP ')) continue
    const m = /^(\w+)(\{.*\})? (\S+)$/.exec(line)
    expect(m, line).not.toBeNull()
    expect(typed.has(m![1] as string), `${m![1]} has a TYPE line before its samples`).toBe(true)
    out.set(`${m![1]}${m![2] ?? ''}`, Number(m![3]))
  }
  return out
}

describe('server metrics for Prometheus', () => {
  it('renders every counter and gauge of the server info, labels escaped', () => {
    const got = samples(formatMetrics(INFO, 123456789))
    expect(got.get('petal_server_info{model="my \\"model\\"\\\\v2",blocks="4:8",device="cpu",quantization="int8",version="0.1.0",peer_id="12D3KooWabc"}')).toBe(1)
    expect(['joining', 'online', 'draining'].map(s => got.get(`petal_server_state{state="${s}"}`))).toEqual([0, 1, 0])
    expect(got.get('petal_blocks_served')).toBe(4)
    expect(got.get('petal_decode_tokens_per_second_per_block')).toBe(512.5)
    expect(got.get('petal_sessions_open')).toBe(3)
    expect(got.get('petal_cache_free_tokens')).toBe(16000)
    expect(got.get('petal_runs_queued')).toBe(4)
    expect(got.get('petal_runs_computed_total')).toBe(120)
    expect(got.get('petal_runs_batched_total')).toBe(30)
    expect(got.get('petal_runs_dropped_before_start_total')).toBe(7)
    expect(got.get('process_resident_memory_bytes')).toBe(123456789)
  })

  it('a server without optional counters reports them as 0', () => {
    const { metrics, quantization, ...older } = INFO
    const got = samples(formatMetrics(older, 1))
    expect(got.get('petal_runs_computed_total')).toBe(0)
    expect([...got.keys()].find(k => k.startsWith('petal_server_info'))).toContain('quantization="none"')
  })

  it('answers GET /metrics, 404 elsewhere, and 500 when the info cannot be read', async () => {
    let broken = false
    const endpoint = await MetricsEndpoint.listen({ port: 0, info: () => { if (broken) throw new Error('gone'); return INFO } })
    try {
      const res = await fetch(endpoint.url)
      expect(res.status).toBe(200)
      expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/)
      expect(samples(await res.text()).get('petal_sessions_max')).toBe(16)
      expect((await fetch(endpoint.url.replace('/metrics', '/other'))).status).toBe(404)
      broken = true
      const failed = await fetch(endpoint.url)
      expect([failed.status, await failed.text()]).toEqual([500, 'Cannot read the server\'s metrics: gone\n'])
    } finally {
      await endpoint.close()
    }
  })
})
