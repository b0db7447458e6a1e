/** What routing needs to know about one server. */
export interface ServerCandidate {
  readonly peerId: string
  /** Blocks [start, end) the server holds; it can run any contiguous part of them. */
  readonly start: number
  readonly end: number
  /** Round-trip time from the client, ms. */
  readonly rttMs: number
  /** Single-token forward speed through one block, blocks per second. */
  readonly blocksPerSecond: number
  /** Whether the server has room for one more session. */
  readonly hasCacheRoom: boolean
  /**
   * Sessions open on it when it was last asked (default 0). Their runs take turns on its
   * device, so a hop's compute counts (1 + openSessions) times: equal servers share clients.
   */
  readonly openSessions?: number
  /** A hop on this server starts and ends at start + k * graphBlocks (or at end). Default 1. */
  readonly graphBlocks?: number
}

/** One hop of a route: server `peerId` runs blocks [start, end). */
export interface RouteHop {
  readonly peerId: string
  readonly start: number
  readonly end: number
}

export interface PlanOptions {
  /** Fixed cost of every hop besides its RTT (serialization, queueing), ms. Default 1. */
  hopOverheadMs?: number
  /** Added to a server without cache room, so it is used only when nothing else covers. Default 10 s. */
  fullPenaltyMs?: number
  /**
   * Scales each server's hop costs by its own random factor in [1, 1 + jitter), drawn once per
   * plan (default 0: none). Clients that see the same swarm would otherwise all pick the same
   * one of several near-equal servers until a discovery shows it busy; with jitter they spread,
   * at a cost of at most `jitter` of the hop's time. Servers that differ by more stay ranked.
   */
  jitter?: number
  /** Random numbers in [0, 1) for the jitter (default Math.random). */
  random?: () => number
}

/** No set of servers covers the blocks asked for. */
export class NoRouteError extends Error {
  static readonly code = 'ERR_NO_ROUTE'
  readonly code = NoRouteError.code
  override readonly name = 'NoRouteError'
  readonly uncovered: number[]

  /** `context` ends the message (e.g. which failure made the route necessary); `cause` is kept. */
  constructor (from: number, to: number, uncovered: number[], opts: { context?: string, cause?: unknown } = {}) {
    super(`Cannot route blocks [${from}, ${to}): no reachable server holds block${uncovered.length > 1 ? 's' : ''} ${uncovered.join(', ')}${opts.context !== undefined ? ` ${opts.context}` : ''}`, { cause: opts.cause })
    this.uncovered = uncovered
  }
}

/**
 * The fastest chain of servers through blocks [from, to): Dijkstra over block boundaries,
 * where an edge a -> b on server s costs s.rtt + overhead + (b - a) / s.speed times
 * (1 + s.openSessions), all times s's jitter factor. Every hop pays its RTT, so one server
 * covering more blocks beats several short hops.
 */
export function planRoute (servers: readonly ServerCandidate[], from: number, to: number, opts: PlanOptions = {}): RouteHop[] {
  const overhead = opts.hopOverheadMs ?? 1
  const fullPenalty = opts.fullPenaltyMs ?? 10_000
  const jitter = opts.jitter ?? 0
  const random = opts.random ?? Math.random
  const scale = new Map(servers.map(s => [s.peerId, jitter > 0 ? 1 + jitter * random() : 1]))
  const n = to - from
  const cost = new Array<number>(n + 1).fill(Infinity)
  const prev = new Array<RouteHop | undefined>(n + 1).fill(undefined)
  const done = new Array<boolean>(n + 1).fill(false)
  cost[0] = 0
  for (;;) {
    let u = -1
    for (let i = 0; i <= n; i++) if (!done[i] && cost[i] !== Infinity && (u < 0 || (cost[i] as number) < (cost[u] as number))) u = i
    if (u < 0 || u === n) break
    done[u] = true
    const block = from + u
    for (const s of servers) {
      if (s.start > block || s.end <= block || !isCut(s, block)) continue
      const perBlockMs = (1 + (s.openSessions ?? 0)) * 1000 / Math.max(s.blocksPerSecond, 1e-6)
      for (let b = block + 1; b <= Math.min(s.end, to); b++) {
        if (!isCut(s, b)) continue
        const c = (cost[u] as number) + (s.rttMs + overhead + (b - block) * perBlockMs) * (scale.get(s.peerId) as number) + (s.hasCacheRoom ? 0 : fullPenalty)
        const v = b - from
        if (c < (cost[v] as number)) {
          cost[v] = c
          prev[v] = { peerId: s.peerId, start: block, end: b }
        }
      }
    }
  }
  if (cost[n] === Infinity) throw new NoRouteError(from, to, uncoveredBlocks(servers, from, to))
  const hops: RouteHop[] = []
  for (let v = n; v > 0;) {
    const hop = prev[v] as RouteHop
    hops.unshift(hop)
    v = hop.start - from
  }
  return mergeHops(hops)
}

/** Whether a hop on server `s` may start or end at block boundary `b`. */
function isCut (s: ServerCandidate, b: number): boolean {
  const step = s.graphBlocks ?? 1
  return b === s.end || (b - s.start) % step === 0
}

/** Blocks in [from, to) that no server holds. */
export function uncoveredBlocks (servers: readonly Pick<ServerCandidate, 'start' | 'end'>[], from: number, to: number): number[] {
  const out: number[] = []
  for (let b = from; b < to; b++) if (!servers.some(s => s.start <= b && b < s.end)) out.push(b)
  return out
}

/** Adjacent hops on the same server become one. */
function mergeHops (hops: RouteHop[]): RouteHop[] {
  const out: RouteHop[] = []
  for (const h of hops) {
    const last = out.at(-1)
    if (last !== undefined && last.peerId === h.peerId && last.end === h.start) out[out.length - 1] = { ...last, end: h.end }
    else out.push(h)
  }
  return out
}
