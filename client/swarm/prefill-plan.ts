/**
 * How a long run (a prompt) goes through a route: whole, one server after another, or as
 * chunks that follow one another along it, so that the servers compute different chunks at
 * once (pipeline parallelism). Chunks pay each server's per-run cost (a round trip, a run's
 * fixed overhead) once each, so they pay off only when a chunk's compute outweighs it, and
 * only where the servers compute on devices of their own.
 */

/** Fewest tokens in a chunk: a run costs each server a fixed overhead too. */
export const MIN_PREFILL_CHUNK = 32

/** Most chunks per hop of the route: more gain little once the last server is not long alone. */
export const MAX_PREFILL_CHUNKS_PER_HOP = 2

/** Chunks must save at least this share of the whole run's time to be used ('auto'). */
const MIN_GAIN = 0.1

/** A run's fixed cost on a server beyond its round trip, ms (measured: about 1 ms on loopback). */
const RUN_OVERHEAD_MS = 1

/** What the plan needs to know of one hop. */
export interface PrefillStage {
  /** Compute per token of a prefill through the hop's blocks, ms (0: not known). */
  readonly msPerToken: number
  /** Round trip to the server, ms. */
  readonly rttMs: number
  /** The hosts the server announces addresses on (IPs, DNS names). */
  readonly hosts: ReadonlySet<string>
}

/**
 * The sizes of the chunks a run of T tokens goes as ([T]: whole). `mode` true cuts it into
 * MAX_PREFILL_CHUNKS_PER_HOP chunks per hop (of at least MIN_PREFILL_CHUNK tokens); false
 * never; 'auto' takes the number of chunks that the servers' announced prefill speed and
 * round trips say is fastest, when it saves MIN_GAIN, and never when two of the servers share
 * a host (their chunks would take turns on one machine: on a 2-core VM three servers'
 * prefill went 0.84x as fast in chunks).
 */
export function prefillChunkSizes (T: number, stages: readonly PrefillStage[], mode: boolean | 'auto'): number[] {
  const most = Math.min(MAX_PREFILL_CHUNKS_PER_HOP * stages.length, Math.floor(T / MIN_PREFILL_CHUNK))
  if (mode === false || stages.length < 2 || most < 2) return [T]
  let count = most
  if (mode === 'auto') {
    if (sharesHost(stages) || stages.some(s => !(s.msPerToken > 0))) return [T]
    count = 1
    for (let k = 2; k <= most; k++) if (estimatePrefillMs(stages, T, k) < estimatePrefillMs(stages, T, count)) count = k
    if (estimatePrefillMs(stages, T, count) > (1 - MIN_GAIN) * estimatePrefillMs(stages, T, 1)) return [T]
  }
  const size = Math.ceil(T / count)
  return Array.from({ length: Math.ceil(T / size) }, (_, i) => Math.min(size, T - i * size))
}

/**
 * Estimated time for T tokens through the route as k chunks, ms: the first chunk crosses every
 * hop, and each later one comes out a slowest hop's chunk time after it.
 */
export function estimatePrefillMs (stages: readonly PrefillStage[], T: number, k: number): number {
  const perChunk = stages.map(s => (T / k) * s.msPerToken + s.rttMs + RUN_OVERHEAD_MS)
  return perChunk.reduce((a, b) => a + b, 0) + (k - 1) * Math.max(...perChunk)
}

/** The hosts in multiaddrs: `/ip4/1.2.3.4/tcp/1` -> 1.2.3.4; unspecified addresses are skipped. */
export function hostsOf (addrs: readonly string[]): Set<string> {
  const hosts = new Set<string>()
  for (const addr of addrs) {
    const [, proto, host] = addr.split('/')
    if (host === undefined || !['ip4', 'ip6', 'dns', 'dns4', 'dns6'].includes(proto ?? '')) continue
    if (host !== '0.0.0.0' && host !== '::') hosts.add(host)
  }
  return hosts
}

function sharesHost (stages: readonly PrefillStage[]): boolean {
  const seen = new Set<string>()
  for (const s of stages) {
    for (const h of s.hosts) if (seen.has(h)) return true
    for (const h of s.hosts) seen.add(h)
  }
  return false
}
