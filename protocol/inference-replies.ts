/** Inference stream, server -> client (protocol /petal/1/inference). */
import { BadMessageError, type ErrorFrame } from './errors.js'
import { parseCarried, parseHidden, type HiddenTensor } from './hidden.js'
import { MAX_ID_LENGTH, MAX_TEXT_LENGTH, resolveLimits, type Limits } from './limits.js'
import { MAX_PUSH_HOPS } from './push-message.js'
import { describe, expectFields, expectType, readBool, readEnum, readInt, readNumber, readOptInt, readString } from './validate.js'

/** The session is open over blocks [start, end) with a cache budget of `maxTokens` positions. */
export interface OpenedMessage {
  type: 'opened'
  sessionId: string
  start: number
  end: number
  maxTokens: number
  /** The server carries outputs along push chains (RunMessage.carry). Absent: older servers, which do not. */
  carriesOutputs?: boolean
}

/**
 * Output of run `runId`: hidden states of positions start .. start+T-1 after
 * the session's blocks, in the dtype of the run's input. computeMs is time
 * spent computing, queuedMs time spent waiting in the session's queue.
 */
export interface ResultMessage {
  type: 'result'
  runId: number
  start: number
  hidden: HiddenTensor // (1, T, C)
  computeMs: number
  queuedMs: number
  /** The last hop of a run sent with `carry`: the earlier hops' outputs, in route order, each (1, T, C). */
  carried?: HiddenTensor[]
}

/** Run `runId` was an `adopt`: the session's cache now holds `length` positions copied from the other session. */
export interface AdoptedMessage {
  type: 'adopted'
  runId: number
  length: number
}

/**
 * A failure, of run `runId` when set, else of the stream or session. Same
 * shape as ErrorFrame: rebuild the class with errorFromFrame().
 */
export type ErrorMessage = ErrorFrame

/** The server is draining: finish or move the session soon. */
export interface NoticeMessage {
  type: 'notice'
  state: 'draining'
}

/**
 * Run `runId` is computing and `rows` of its rows are done: sent (to clients that asked, with
 * OpenMessage.progress) about once a second while a long run computes in pieces. The client
 * then knows the server works on it, however long the whole run takes.
 */
export interface ProgressMessage {
  type: 'progress'
  runId: number
  rows: number
}

/** Any message a server sends on an inference stream. */
export type ServerMessage = OpenedMessage | ResultMessage | AdoptedMessage | ErrorMessage | NoticeMessage | ProgressMessage

/** Parses an `opened` message. */
export function parseOpened (value: unknown): OpenedMessage {
  const obj = expectFields(value, 'opened')
  expectType(obj, 'opened', 'opened')
  const sessionId = readString(obj, 'sessionId', 'opened', MAX_ID_LENGTH)
  const start = readInt(obj, 'start', 'opened')
  const end = readInt(obj, 'end', 'opened', start + 1)
  const maxTokens = readInt(obj, 'maxTokens', 'opened', 1)
  const msg: OpenedMessage = { type: 'opened', sessionId, start, end, maxTokens }
  if (readBool(obj, 'carriesOutputs', 'opened', false)) msg.carriesOutputs = true
  return msg
}

/** Parses a `result` message; hidden must be (1, T, C) with T <= maxTokensPerRun. */
export function parseResult (value: unknown, limits?: Partial<Limits>): ResultMessage {
  const obj = expectFields(value, 'result')
  expectType(obj, 'result', 'result')
  const msg: ResultMessage = {
    type: 'result',
    runId: readInt(obj, 'runId', 'result'),
    start: readInt(obj, 'start', 'result'),
    hidden: parseHidden(obj['hidden'], 'result.hidden', resolveLimits(limits)),
    computeMs: readNumber(obj, 'computeMs', 'result'),
    queuedMs: readNumber(obj, 'queuedMs', 'result')
  }
  const carried = parseCarried(obj, 'result', msg.hidden, resolveLimits(limits), MAX_PUSH_HOPS)
  if (carried !== undefined) msg.carried = carried
  return msg
}

/** Parses an `adopted` message. */
export function parseAdopted (value: unknown): AdoptedMessage {
  const obj = expectFields(value, 'adopted')
  expectType(obj, 'adopted', 'adopted')
  return { type: 'adopted', runId: readInt(obj, 'runId', 'adopted'), length: readInt(obj, 'length', 'adopted', 1) }
}

/**
 * Parses an `error` frame. `code` may be any non-empty string (a newer
 * peer's code); errorFromFrame() maps unknown codes to INTERNAL.
 */
export function parseErrorFrame (value: unknown): ErrorFrame {
  const obj = expectFields(value, 'error')
  expectType(obj, 'error', 'error')
  const frame: ErrorFrame = {
    type: 'error',
    code: readString(obj, 'code', 'error', 64),
    message: readString(obj, 'message', 'error', MAX_TEXT_LENGTH, true)
  }
  const runId = readOptInt(obj, 'runId', 'error')
  if (runId !== undefined) frame.runId = runId
  const cacheEnd = readOptInt(obj, 'cacheEnd', 'error')
  if (cacheEnd !== undefined) frame.cacheEnd = cacheEnd
  return frame
}

/** Parses a `notice` message. */
export function parseNotice (value: unknown): NoticeMessage {
  const obj = expectFields(value, 'notice')
  expectType(obj, 'notice', 'notice')
  return { type: 'notice', state: readEnum(obj, 'state', 'notice', ['draining'] as const) }
}

/** Parses a `progress` message. */
export function parseProgress (value: unknown): ProgressMessage {
  const obj = expectFields(value, 'progress')
  expectType(obj, 'progress', 'progress')
  return { type: 'progress', runId: readInt(obj, 'runId', 'progress'), rows: readInt(obj, 'rows', 'progress', 1) }
}

/** Parses any server -> client inference message by its `type`. */
export function parseServerMessage (value: unknown, limits?: Partial<Limits>): ServerMessage {
  const type = expectFields(value, 'message')['type']
  switch (type) {
    case 'opened': return parseOpened(value)
    case 'result': return parseResult(value, limits)
    case 'adopted': return parseAdopted(value)
    case 'error': return parseErrorFrame(value)
    case 'notice': return parseNotice(value)
    case 'progress': return parseProgress(value)
    default: throw new BadMessageError(`Invalid message.type: expected one of opened, result, adopted, error, notice, progress, got ${describe(type)}`)
  }
}
