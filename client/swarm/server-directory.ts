import type { ServerInfo } from '../../protocol/server-info.js'
import type { ServerCandidate } from '../routing/route-planner.js'

/** Most session notes kept between two discoveries. */
const MAX_OWN_SESSION_NOTES = 10_000

/** Discoveries in a row that may miss a server (not find it, never ask it) before it is dropped. */
const MAX_DISCOVERIES_MISSED = 1

/** A server as the client last saw it. */
export interface KnownServer {
  readonly info: ServerInfo
  readonly rttMs: number
}

export interface BanPolicy {
  /** First ban, ms (Petals uses ~15 s). */
  baseMs: number
  /** Longest ban, ms. */
  maxMs: number
}

/**
 * Which servers' weights a client accepts (one model, one client's choice: the directory is
 * shared by every LanguageModel of a SwarmClient, so the policy travels with each target).
 */
export interface WeightPolicy {
  /** sha256 of each block's weights as the client's checkpoint has them; a server that differs is never used. */
  readonly expectedHashes?: readonly string[]
  /** Refuse servers announcing quantized weights (ServerInfo.quantization). */
  readonly exactWeightsOnly?: boolean
}

/**
 * The servers of one model that the client knows, and which of them are banned after
 * failing: bans double with each failure up to a cap, and lapse by themselves.
 */
export class ServerDirectory {
  readonly #servers = new Map<string, KnownServer>()
  readonly #bans = new Map<string, { until: number, strikes: number }>()
  /** Known servers the last discoveries in a row did not find, and how many of them. */
  readonly #missed = new Map<string, number>()
  /**
   * Sessions this client opened (+1) or closed (-1), with when: those noted since the last
   * discovery began are not in its servers' counts yet.
   */
  #ownSessions: Array<{ peerId: string, change: 1 | -1, at: number }> = []
  readonly #policy: BanPolicy

  constructor (policy: BanPolicy = { baseMs: 15_000, maxMs: 300_000 }) {
    this.#policy = policy
  }

  /**
   * Whether a server's weights are the ones a client expects: the same hashes (when it has
   * hashes to compare) and, with `exactWeightsOnly`, not quantized.
   */
  hasExpectedWeights (info: ServerInfo, weights: WeightPolicy = {}): boolean {
    if (weights.exactWeightsOnly === true && info.quantization !== undefined) return false
    const expected = weights.expectedHashes
    if (expected === undefined) return true
    return info.blockHashes.every((h, i) => expected[info.start + i] === undefined || expected[info.start + i] === h)
  }

  /**
   * Takes in a fresh discovery result. `began`: when that discovery started asking, on
   * performance.now()'s clock (default now). Servers' session counts include this client's
   * sessions from before then; the ones noted since still count on top, so that a discovery
   * running while sessions open does not forget them.
   *
   * Without `asked` the result replaces what is known. With it (the peers the discovery asked
   * for their info), a known server the discovery never asked is kept, as last seen, through
   * MAX_DISCOVERIES_MISSED discoveries in a row: a DHT lookup that timed out halfway, or
   * records not yet spread, must not empty a directory of live servers. One that was asked
   * and is not in the result failed to answer, and is dropped.
   */
  update (servers: readonly KnownServer[], began = performance.now(), asked?: ReadonlySet<string>): void {
    const kept = asked === undefined ? [] : this.all().filter(s => !asked.has(s.info.peerId) && (this.#missed.get(s.info.peerId) ?? 0) < MAX_DISCOVERIES_MISSED)
    this.#servers.clear()
    this.#ownSessions = this.#ownSessions.filter(n => n.at >= began)
    for (const s of servers) {
      this.#servers.set(s.info.peerId, s)
      this.#missed.delete(s.info.peerId)
    }
    // (every server found was asked: none of these is in the result)
    for (const s of kept) {
      this.#servers.set(s.info.peerId, s)
      this.#missed.set(s.info.peerId, (this.#missed.get(s.info.peerId) ?? 0) + 1)
    }
    for (const peerId of this.#missed.keys()) if (!this.#servers.has(peerId)) this.#missed.delete(peerId)
  }

  get (peerId: string): KnownServer | undefined {
    return this.#servers.get(peerId)
  }

  all (): KnownServer[] {
    return [...this.#servers.values()]
  }

  ban (peerId: string, now = Date.now()): void {
    const strikes = (this.#bans.get(peerId)?.strikes ?? 0) + 1
    const ms = Math.min(this.#policy.maxMs, this.#policy.baseMs * 2 ** (strikes - 1))
    this.#bans.set(peerId, { until: now + ms, strikes })
  }

  /** Lifts a ban before it ends (its strikes stay: a next failure bans it longer). */
  liftBan (peerId: string): void {
    const ban = this.#bans.get(peerId)
    if (ban !== undefined) ban.until = 0
  }

  /**
   * A server said it is draining: it leaves its span (stopping, or moving to other blocks).
   * Not a failure, so no ban: it stops being a candidate until a fresh discovery says
   * what it serves now.
   */
  markDraining (peerId: string): void {
    const known = this.#servers.get(peerId)
    if (known !== undefined) this.#servers.set(peerId, { ...known, info: { ...known.info, state: 'draining' } })
  }

  /**
   * A server that could not be reached at all (its address refuses connections: it stopped, or
   * restarted under a new identity): dropped until a discovery lists it again, which only
   * servers that answer get into. Also banned, so that a stale discovery cannot bring it
   * straight back.
   */
  forget (peerId: string, now = Date.now()): void {
    this.#servers.delete(peerId)
    this.ban(peerId, now)
  }

  /**
   * A server refused a session for want of room (SESSION_LIMIT, CACHE_LIMIT): not a failure, so
   * no ban; routing counts it full until a discovery says otherwise.
   */
  markFull (peerId: string): void {
    const known = this.#servers.get(peerId)
    if (known !== undefined) this.#servers.set(peerId, { ...known, info: { ...known.info, openSessions: known.info.maxSessions, freeCacheTokens: 0 } })
  }

  /**
   * This client opened (+1) or closed (-1) a session on a server: routing counts it until a
   * discovery that began after it, so that sessions opened one after another spread over equal servers.
   */
  noteSession (peerId: string, change: 1 | -1, now = performance.now()): void {
    this.#ownSessions.push({ peerId, change, at: now })
    // a client that never looks at the swarm again keeps only the newest notes
    if (this.#ownSessions.length > MAX_OWN_SESSION_NOTES) this.#ownSessions.splice(0, this.#ownSessions.length - MAX_OWN_SESSION_NOTES)
  }

  isBanned (peerId: string, now = Date.now()): boolean {
    const ban = this.#bans.get(peerId)
    return ban !== undefined && ban.until > now
  }

  /**
   * Why the servers it knows for `blocks` are no route candidates, one phrase each (banned,
   * draining, other weights): what a "no route" error adds, since such a server looks alive
   * to whoever reads it.
   */
  leftOut (blocks: readonly number[], weights: WeightPolicy = {}, now = Date.now()): string[] {
    const out: string[] = []
    for (const s of this.all()) {
      const { peerId, start, end, state } = s.info
      if (!blocks.some(b => b >= start && b < end)) continue
      const ban = this.#bans.get(peerId)
      const why = ban !== undefined && ban.until > now
        ? `banned ${((ban.until - now) / 1000).toFixed(1)} s more after ${ban.strikes} failure${ban.strikes > 1 ? 's' : ''}`
        : state !== 'online' ? state : !this.hasExpectedWeights(s.info, weights) ? 'other weights' : undefined
      if (why !== undefined) out.push(`…${peerId.slice(-6)}[${start},${end}) ${why}`)
    }
    return out
  }

  /** Servers left out because their weights are not the ones `weights` asks for. */
  refusedForWeights (weights: WeightPolicy): KnownServer[] {
    return this.all().filter(s => !this.hasExpectedWeights(s.info, weights))
  }

  /** Online, unbanned servers with the weights asked for (default: any), as route candidates. */
  candidates (now = Date.now(), weights: WeightPolicy = {}): ServerCandidate[] {
    return this.all()
      .filter(s => s.info.state === 'online' && !this.isBanned(s.info.peerId, now) && this.hasExpectedWeights(s.info, weights))
      .map(s => {
        const own = this.#ownSessions.reduce((sum, n) => n.peerId === s.info.peerId ? sum + n.change : sum, 0)
        const openSessions = Math.max(0, s.info.openSessions + own)
        return {
          peerId: s.info.peerId,
          start: s.info.start,
          end: s.info.end,
          rttMs: s.rttMs,
          blocksPerSecond: s.info.throughput.decodeTokensPerSec > 0 ? s.info.throughput.decodeTokensPerSec : 1,
          hasCacheRoom: s.info.freeCacheTokens > 0 && openSessions < s.info.maxSessions,
          openSessions,
          ...(s.info.graphBlocks !== undefined ? { graphBlocks: s.info.graphBlocks } : {})
        }
      })
  }
}
