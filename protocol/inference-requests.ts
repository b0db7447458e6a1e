/**
 * Inference stream, client -> server (protocol /petal/1/inference).
 * A stream carries one session: `open` first, then any number of `run`, `adopt`
 * and `cancel`, then `close` (or the stream just ends).
 */
import { BadMessageError } from './errors.js'
import { parseHidden, type HiddenTensor } from './hidden.js'
import { resolveLimits, type Limits, MAX_ID_LENGTH, MAX_LIST_LENGTH } from './limits.js'
import { MAX_PUSH_HOPS, parsePushHop, type PushHop } from './push-message.js'
import { describe, expectFields, expectType, intItem, readBool, readInt, readList, readOptInt, readOptList, readOptParents, readString } from './validate.js'

/** Opens a session over blocks [start, end) of `modelId`, with a cache budget of `maxTokens` positions. */
export interface OpenMessage {
  type: 'open'
  modelId: string
  start: number
  end: number
  maxTokens: number
  /**
   * The client takes `progress` frames: while a long run computes (in pieces), the server says
   * every second or so how far it got, so that the client waits for a slow run instead of
   * timing it out. Absent: older clients, which get none.
   */
  progress?: boolean
}

/**
 * Runs tokens at positions start .. start+T-1 through the session's blocks.
 * The server first truncates its cache to `start` (rollback is implicit).
 * `push` names the servers that get the output next, in order; with
 * `replyOutput` false (default true) the output is not sent back here.
 * With `push` and `carry` (a server that says `carriesOutputs` when opened), no hop
 * replies on its own: each passes the earlier hops' outputs on with its push
 * (PushMessage.carried) and the last hop returns them all in one result
 * (ResultMessage.carried), one message to the client per run instead of one per hop.
 * With `parents` the T rows are a token tree (model/token-tree.ts): row i
 * continues row parents[i] (-1: the cached past) and only the trunk is cached.
 */
export interface RunMessage {
  type: 'run'
  runId: number
  start: number
  hidden: HiddenTensor // (1, T, C)
  parents?: number[] // (T)
  push?: PushHop[]
  replyOutput: boolean
  carry?: boolean
}

/**
 * Cancels runs: every id in `runIds`, and with `fromRunId` every run whose
 * id is >= it. Queued runs are dropped, late arrivals ignored; no result is sent.
 */
export interface CancelMessage {
  type: 'cancel'
  runIds: number[]
  fromRunId?: number
}

/**
 * Makes this session's cache hold the first `length` positions of another session of the
 * same client on this server, over the same blocks: the copy costs memory bandwidth, not a
 * prefill (the choices of one prompt, a forked conversation). Executes in order with the
 * session's runs, under `runId`; the reply is `adopted`, or an error frame with the runId
 * (a server that predates this message answers BAD_MESSAGE: the client replays instead).
 */
export interface AdoptMessage {
  type: 'adopt'
  runId: number
  fromSessionId: string
  length: number
}

/** Ends the session; the server frees its cache. */
export interface CloseMessage {
  type: 'close'
}

/** Any message a client sends on an inference stream. */
export type ClientMessage = OpenMessage | RunMessage | AdoptMessage | CancelMessage | CloseMessage

/** Parses an `open` message; BAD_MESSAGE unless types fit and start < end, maxTokens >= 1. */
export function parseOpen (value: unknown): OpenMessage {
  const obj = expectFields(value, 'open')
  expectType(obj, 'open', 'open')
  const modelId = readString(obj, 'modelId', 'open', MAX_ID_LENGTH)
  const start = readInt(obj, 'start', 'open')
  const end = readInt(obj, 'end', 'open', start + 1)
  const maxTokens = readInt(obj, 'maxTokens', 'open', 1)
  const msg: OpenMessage = { type: 'open', modelId, start, end, maxTokens }
  if (readBool(obj, 'progress', 'open', false)) msg.progress = true
  return msg
}

/** Parses a `run` message; hidden must be (1, T, C) with T <= maxTokensPerRun. */
export function parseRun (value: unknown, limits?: Partial<Limits>): RunMessage {
  const obj = expectFields(value, 'run')
  expectType(obj, 'run', 'run')
  const msg: RunMessage = {
    type: 'run',
    runId: readInt(obj, 'runId', 'run'),
    start: readInt(obj, 'start', 'run'),
    hidden: parseHidden(obj['hidden'], 'run.hidden', resolveLimits(limits)),
    replyOutput: readBool(obj, 'replyOutput', 'run', true)
  }
  const push = readOptList(obj, 'push', 'run', parsePushHop, MAX_PUSH_HOPS)
  if (push !== undefined) msg.push = push
  const parents = readOptParents(obj, 'parents', 'run', msg.hidden.dims[1])
  if (parents !== undefined) msg.parents = parents
  if (readBool(obj, 'carry', 'run', false)) msg.carry = true
  return msg
}

/** Parses a `cancel` message. */
export function parseCancel (value: unknown): CancelMessage {
  const obj = expectFields(value, 'cancel')
  expectType(obj, 'cancel', 'cancel')
  const msg: CancelMessage = { type: 'cancel', runIds: readList(obj, 'runIds', 'cancel', intItem(), MAX_LIST_LENGTH) }
  const fromRunId = readOptInt(obj, 'fromRunId', 'cancel')
  if (fromRunId !== undefined) msg.fromRunId = fromRunId
  return msg
}

/** Parses an `adopt` message; BAD_MESSAGE unless types fit and length >= 1. */
export function parseAdopt (value: unknown): AdoptMessage {
  const obj = expectFields(value, 'adopt')
  expectType(obj, 'adopt', 'adopt')
  return {
    type: 'adopt',
    runId: readInt(obj, 'runId', 'adopt'),
    fromSessionId: readString(obj, 'fromSessionId', 'adopt', MAX_ID_LENGTH),
    length: readInt(obj, 'length', 'adopt', 1)
  }
}

/** Parses a `close` message. */
export function parseClose (value: unknown): CloseMessage {
  expectType(expectFields(value, 'close'), 'close', 'close')
  return { type: 'close' }
}

/** Parses any client -> server inference message by its `type`. */
export function parseClientMessage (value: unknown, limits?: Partial<Limits>): ClientMessage {
  const type = expectFields(value, 'message')['type']
  switch (type) {
    case 'open': return parseOpen(value)
    case 'run': return parseRun(value, limits)
    case 'adopt': return parseAdopt(value)
    case 'cancel': return parseCancel(value)
    case 'close': return parseClose(value)
    default: throw new BadMessageError(`Invalid message.type: expected one of open, run, adopt, cancel, close, got ${describe(type)}`)
  }
}
