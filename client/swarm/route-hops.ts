import { setTimeout as sleep } from 'node:timers/promises'
import { peerIdFromString } from '@libp2p/peer-id'
import { NoRouteError, planRoute, type RouteHop } from '../routing/route-planner.js'
import { PetalError } from '../../protocol/errors.js'
import type { ServerDirectory } from './server-directory.js'
import { SpanSession, UnreachableError } from './span-session.js'
import type { SwarmTargetInit } from './swarm-target.js'

/** One hop of the live route, and the runs in flight at it (run id -> first position). */
export interface Hop {
  readonly start: number
  readonly end: number
  readonly session: SpanSession
  readonly inFlight: Map<number, number>
}

/**
 * Opens a session on every server of a route, in parallel. If one fails, the others are
 * closed, the failed server is banned, and its error is thrown.
 */
export async function openHops (init: SwarmTargetInit, route: readonly RouteHop[], onPushFailure?: (runId: number, err: PetalError) => void): Promise<Hop[]> {
  const sessions = await Promise.allSettled(route.map(async r => await SpanSession.open({
    host: init.host,
    peerId: peerIdFromString(r.peerId),
    modelId: init.modelId,
    start: r.start,
    end: r.end,
    maxTokens: init.maxTokens,
    hiddenSize: init.parts.config.hiddenSize,
    ...(init.wireDtype !== undefined ? { wireDtype: init.wireDtype } : {}),
    ...(init.sendDelayMs !== undefined ? { sendDelayMs: init.sendDelayMs } : {}),
    ...(init.timeoutMs !== undefined ? { timeoutMs: init.timeoutMs } : {}),
    ...(init.liveness !== undefined ? { liveness: init.liveness } : {}),
    ...(onPushFailure !== undefined ? { onPushFailure } : {})
  })))
  const failed = sessions.findIndex(s => s.status === 'rejected')
  if (failed >= 0) {
    for (const s of sessions) if (s.status === 'fulfilled') void s.value.close().catch(() => {})
    const reason: unknown = (sessions[failed] as PromiseRejectedResult).reason
    noteRefusal(init.directory, (route[failed] as RouteHop).peerId, reason)
    throw reason
  }
  return sessions.map(s => {
    const session = (s as PromiseFulfilledResult<SpanSession>).value
    init.directory.noteSession(session.peerId.toString(), 1)
    return { start: session.start, end: session.end, session, inFlight: new Map() }
  })
}

/** A refusal for want of room (SESSION_LIMIT, CACHE_LIMIT): the server is busy, not broken. */
export function isFullRefusal (err: unknown): boolean {
  return err instanceof PetalError && (err.code === 'SESSION_LIMIT' || err.code === 'CACHE_LIMIT')
}

/**
 * What a server's refusal of a session says about it: nothing listening there (forgotten until
 * a discovery finds it), leaving (draining), full for now (no ban: busy is not broken), or failed (banned).
 */
function noteRefusal (directory: ServerDirectory, peerId: string, reason: unknown): void {
  if (reason instanceof UnreachableError) directory.forget(peerId)
  else if (reason instanceof PetalError && reason.code === 'DRAINING') directory.markDraining(peerId)
  else if (isFullRefusal(reason)) directory.markFull(peerId)
  else directory.ban(peerId)
}

/**
 * Looks at the swarm this many times before a route is given up even with no coverage wait:
 * a discovery right after a server restarts can miss it (its first announcements are still
 * out), and the next one, a quarter second later, finds it.
 */
const MIN_LOOKS = 2

/** Default SwarmTargetInit.routeJitter: a route may cost up to 10% more than the cheapest. */
export const ROUTE_JITTER = 0.1

/**
 * The fastest route over blocks [from, to), within init.routeJitter (near-equal servers are
 * picked at random, so clients spread over them). When the servers known hold none, looks at the
 * swarm again (twice at least, a quarter second apart), and again with growing pauses (0.25,
 * 0.5, 1, then 2 s) for up to init.coverageWaitMs: the swarm may heal (a server joins, or a
 * --num-blocks server moves there). Rejects with NoRouteError after that.
 */
export async function planCoveredRoute (init: Pick<SwarmTargetInit, 'directory' | 'weights' | 'rediscover' | 'coverageWaitMs' | 'routeJitter' | 'logger'>, from: number, to: number): Promise<RouteHop[]> {
  const began = performance.now()
  const waitMs = init.coverageWaitMs ?? 0
  for (let looks = 0, pauseMs = 250; ; looks++, pauseMs = Math.min(2000, pauseMs * 2)) {
    try {
      return planRoute(init.directory.candidates(Date.now(), init.weights), from, to, { jitter: init.routeJitter ?? ROUTE_JITTER })
    } catch (err) {
      if (!(err instanceof NoRouteError)) throw err
      if (looks > 0) {
        if (looks >= MIN_LOOKS && performance.now() - began + pauseMs > waitMs) {
          const leftOut = init.directory.leftOut(err.uncovered, init.weights)
          if (leftOut.length > 0) err.message += ` (known, left out: ${leftOut.join(', ')})`
          throw err
        }
        init.logger?.warn({ uncovered: err.uncovered, waitedMs: Math.round(performance.now() - began) }, 'no server holds these blocks: waiting for the swarm to cover them')
        await sleep(pauseMs)
      }
    }
    await init.rediscover()
  }
}

export function short (peerId: string): string {
  return `…${peerId.slice(-6)}`
}

/** "…a1b2c3[0,2) -> …d4e5f6[2,5)" */
export function describeRoute (route: readonly RouteHop[]): string {
  return route.map(h => `${short(h.peerId)}[${h.start},${h.end})`).join(' -> ')
}
