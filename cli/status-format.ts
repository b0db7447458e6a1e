import type { KnownServer } from '../client/swarm/server-directory.js'
import { uncoveredBlocks } from '../client/routing/route-planner.js'

/** One model as `status` shows it. */
export interface ModelStatus {
  readonly modelId: string
  readonly numBlocks: number
  readonly servers: readonly KnownServer[]
}

const BAR_WIDTH = 60
const LEVELS = ['!', '▂', '▄', '▆', '█'] as const

/** Servers per block: "█" 4+ servers, "▂" one, "!" none; long models are scaled to BAR_WIDTH cells (each showing its weakest block). */
export function coverageBar (numBlocks: number, servers: readonly Pick<KnownServer['info'], 'start' | 'end'>[]): string {
  const counts = Array.from({ length: numBlocks }, (_, b) => servers.filter(s => s.start <= b && b < s.end).length)
  const cells = Math.min(numBlocks, BAR_WIDTH)
  let bar = ''
  for (let c = 0; c < cells; c++) {
    const from = Math.floor((c * numBlocks) / cells)
    const to = Math.max(from + 1, Math.floor(((c + 1) * numBlocks) / cells))
    const weakest = Math.min(...counts.slice(from, to))
    bar += LEVELS[Math.min(weakest, LEVELS.length - 1)]
  }
  return `[${bar}]`
}

/** The human-readable status report. */
export function formatStatus (models: readonly ModelStatus[]): string {
  if (models.length === 0) return 'No models found: no server answered. Is the bootstrap address right?\n'
  const out: string[] = []
  for (const m of models) {
    const infos = m.servers.map(s => s.info)
    const missing = uncoveredBlocks(infos, 0, m.numBlocks)
    out.push(`model ${m.modelId}: ${m.numBlocks} blocks, ${m.servers.length} server${m.servers.length === 1 ? '' : 's'}, ${missing.length === 0 ? 'all blocks covered' : `${missing.length} block(s) UNCOVERED`}`)
    out.push(`  coverage ${coverageBar(m.numBlocks, infos)}  (servers per block: ${Array.from({ length: m.numBlocks }, (_, b) => infos.filter(s => s.start <= b && b < s.end).length).join(' ')})`)
    const rows = [['SERVER', 'SPAN', 'STATE', 'DECODE tok/s/blk', 'PREFILL tok/s/blk', 'RTT ms', 'SESSIONS', 'FREE CACHE', 'DEVICE', 'RUNS', 'QUEUED']]
    for (const s of [...m.servers].sort((a, b) => a.info.start - b.info.start || a.info.end - b.info.end)) {
      const i = s.info
      // a server reachable only through a relay (behind a NAT): every hop to it takes a detour
      const relayed = i.addrs.length > 0 && i.addrs.every(a => a.includes('/p2p-circuit'))
      rows.push([
        `…${i.peerId.slice(-8)}${relayed ? ' (relay)' : ''}`, `[${i.start},${i.end})`, i.state,
        i.throughput.decodeTokensPerSec.toFixed(0), i.throughput.prefillTokensPerSec.toFixed(0),
        s.rttMs.toFixed(1), `${i.openSessions}/${i.maxSessions}`, String(i.freeCacheTokens), i.quantization !== undefined ? `${i.device} ${i.quantization}` : i.device,
        String(i.metrics?.runsComputed ?? '-'), String(i.metrics?.queuedRuns ?? '-')
      ])
    }
    out.push(...table(rows).map(l => `  ${l}`))
    if (missing.length > 0) out.push(`  WARNING: no server holds block${missing.length > 1 ? 's' : ''} ${missing.join(', ')} of ${m.modelId}: generation through this swarm will fail until one does`)
    out.push('')
  }
  return out.join('\n')
}

function table (rows: readonly string[][]): string[] {
  const widths = (rows[0] ?? []).map((_, c) => Math.max(...rows.map(r => (r[c] ?? '').length)))
  return rows.map(r => r.map((cell, c) => cell.padEnd(widths[c] ?? 0)).join('  ').trimEnd())
}
