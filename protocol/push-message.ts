/**
 * Push stream, server -> server (protocol /petal/1/push). In push mode a
 * server forwards a run's output straight to the next server of the route.
 */
import { peerIdFromString } from '@libp2p/peer-id'
import { BadMessageError } from './errors.js'
import { parseCarried, parseHidden, type HiddenTensor } from './hidden.js'
import { resolveLimits, type Limits, MAX_ID_LENGTH } from './limits.js'
import { expectFields, expectType, readInt, readList, readOptParents, readString } from './validate.js'

/** A server to forward to, and the session the client opened on it for this generation. */
export interface PushHop {
  peerId: string
  sessionId: string
}

/**
 * A run's output forwarded to the next hop: B runs `hidden` as run `runId`
 * at `start` in its session `sessionId`, then forwards its own output to
 * `push[0]` with the rest of the list (empty: last hop).
 */
export interface PushMessage {
  type: 'push'
  sessionId: string
  runId: number
  start: number
  hidden: HiddenTensor // (1, T, C)
  /** The run's token tree, as in RunMessage. */
  parents?: number[] // (T)
  push: PushHop[]
  /**
   * Set when the client asked the route to carry outputs (run.carry): the outputs of the hops
   * before the one that sent this push, in route order (empty from the first hop). B adds
   * its input (the sender's output) and passes the list on; the last hop returns it in its
   * result instead of every hop replying to the client on its own.
   */
  carried?: HiddenTensor[]
}

/** Most hops a run or push may name. */
export const MAX_PUSH_HOPS = 64

/** Parses one PushHop; `path` names it in errors, e.g. "run.push[1]". The peer id must parse as one. */
export function parsePushHop (value: unknown, path = 'hop'): PushHop {
  const obj = expectFields(value, path)
  const peerId = readString(obj, 'peerId', path, MAX_ID_LENGTH)
  try {
    peerIdFromString(peerId)
  } catch (err) {
    throw new BadMessageError(`Invalid ${path}.peerId: "${peerId}" is no peer id (${(err as Error).message})`)
  }
  return { peerId, sessionId: readString(obj, 'sessionId', path, MAX_ID_LENGTH) }
}

/** Parses a `push` message. */
export function parsePush (value: unknown, limits?: Partial<Limits>): PushMessage {
  const obj = expectFields(value, 'push')
  expectType(obj, 'push', 'push')
  const msg: PushMessage = {
    type: 'push',
    sessionId: readString(obj, 'sessionId', 'push', MAX_ID_LENGTH),
    runId: readInt(obj, 'runId', 'push'),
    start: readInt(obj, 'start', 'push'),
    hidden: parseHidden(obj['hidden'], 'push.hidden', resolveLimits(limits)),
    push: readList(obj, 'push', 'push', parsePushHop, MAX_PUSH_HOPS)
  }
  const parents = readOptParents(obj, 'parents', 'push', msg.hidden.dims[1])
  if (parents !== undefined) msg.parents = parents
  const carried = parseCarried(obj, 'push', msg.hidden, resolveLimits(limits), MAX_PUSH_HOPS)
  if (carried !== undefined) msg.carried = carried
  return msg
}
