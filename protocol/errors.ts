/**
 * Errors that cross the wire. Each has a stable `code`; the receiver rebuilds
 * the same class from an error frame and decides retry vs fail from
 * `retryable`. Tests and callers check `code` or `name`, never message text.
 */

import { MAX_TEXT_LENGTH } from './limits.js'

/** Every error code of the Petal protocol. */
export const ERROR_CODES = [
  'BAD_MESSAGE', // malformed frame, wrong field types
  'BAD_SHAPE', // tensor dims don't fit
  'TOO_LARGE', // frame or tensor over a limit
  'UNKNOWN_SESSION',
  'SESSION_LIMIT', // server has too many sessions
  'CACHE_LIMIT', // tokens over the session's or server's cache budget
  'GAP', // a run starts beyond the cache's end (frame carries cacheEnd)
  'WRONG_SPAN', // blocks not served here, or model id mismatch
  'DRAINING', // server shutting down
  'INTERNAL',
  'TIMEOUT',
  'CANCELLED',
  'PUSH_FAILED' // the run was computed, but its output could not be pushed on to the next hop
] as const

/** A stable error code. */
export type ErrorCode = typeof ERROR_CODES[number]

/** Codes where the failure is the server's state, not the caller's bug: try another server. */
const RETRYABLE: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  'DRAINING', 'INTERNAL', 'TIMEOUT', 'SESSION_LIMIT', 'CACHE_LIMIT', 'PUSH_FAILED'
])

/** True when `value` is one of {@link ERROR_CODES}. */
export function isErrorCode (value: unknown): value is ErrorCode {
  return typeof value === 'string' && (ERROR_CODES as readonly string[]).includes(value)
}

/** Whether a client may retry a failure with this code on another server. */
export function isRetryable (code: ErrorCode): boolean {
  return RETRYABLE.has(code)
}

/** Base class of every Petal protocol error. */
export class PetalError extends Error {
  override name = 'PetalError'
  /** Stable code; the same on both ends of the wire. */
  readonly code: ErrorCode

  constructor (code: ErrorCode, message: string, options?: ErrorOptions) {
    super(message, options)
    this.code = code
  }

  /** True when a client may retry on another server (DRAINING, INTERNAL, TIMEOUT, SESSION_LIMIT, CACHE_LIMIT, PUSH_FAILED). */
  get retryable (): boolean {
    return isRetryable(this.code)
  }
}

/** Malformed frame, undecodable bytes or a field of the wrong type. */
export class BadMessageError extends PetalError {
  static readonly code = 'BAD_MESSAGE'
  override readonly name = 'BadMessageError'
  constructor (message: string, options?: ErrorOptions) { super('BAD_MESSAGE', message, options) }
}

/** A tensor's dims don't fit its data or what the receiver expects. */
export class BadShapeError extends PetalError {
  static readonly code = 'BAD_SHAPE'
  override readonly name = 'BadShapeError'
  constructor (message: string, options?: ErrorOptions) { super('BAD_SHAPE', message, options) }
}

/** A frame or tensor is over a configured limit. */
export class TooLargeError extends PetalError {
  static readonly code = 'TOO_LARGE'
  override readonly name = 'TooLargeError'
  constructor (message: string, options?: ErrorOptions) { super('TOO_LARGE', message, options) }
}

/** The session id is not (or no longer) known to the server. */
export class UnknownSessionError extends PetalError {
  static readonly code = 'UNKNOWN_SESSION'
  override readonly name = 'UnknownSessionError'
  constructor (message: string, options?: ErrorOptions) { super('UNKNOWN_SESSION', message, options) }
}

/** The server already holds as many sessions as it allows. */
export class SessionLimitError extends PetalError {
  static readonly code = 'SESSION_LIMIT'
  override readonly name = 'SessionLimitError'
  constructor (message: string, options?: ErrorOptions) { super('SESSION_LIMIT', message, options) }
}

/** The tokens would exceed the session's or the server's cache budget. */
export class CacheLimitError extends PetalError {
  static readonly code = 'CACHE_LIMIT'
  override readonly name = 'CacheLimitError'
  constructor (message: string, options?: ErrorOptions) { super('CACHE_LIMIT', message, options) }
}

/** A run starts beyond the cache's end; resend from `cacheEnd`. */
export class GapError extends PetalError {
  static readonly code = 'GAP'
  override readonly name = 'GapError'
  /** First position the server's cache does not hold. */
  readonly cacheEnd: number

  constructor (message: string, cacheEnd: number, options?: ErrorOptions) {
    super('GAP', message, options)
    this.cacheEnd = cacheEnd
  }
}

/** The requested blocks are not served here, or the model id differs. */
export class WrongSpanError extends PetalError {
  static readonly code = 'WRONG_SPAN'
  override readonly name = 'WrongSpanError'
  constructor (message: string, options?: ErrorOptions) { super('WRONG_SPAN', message, options) }
}

/** The server is shutting down and takes no new work. */
export class DrainingError extends PetalError {
  static readonly code = 'DRAINING'
  override readonly name = 'DrainingError'
  constructor (message: string, options?: ErrorOptions) { super('DRAINING', message, options) }
}

/** An unexpected failure inside the server. */
export class InternalError extends PetalError {
  static readonly code = 'INTERNAL'
  override readonly name = 'InternalError'
  constructor (message: string, options?: ErrorOptions) { super('INTERNAL', message, options) }
}

/**
 * Push mode: the server computed the run but could not hand its output to the next hop (it is
 * unreachable, or the named session is not open there). Whoever was to get the push never
 * will; the client goes on hop by hop. Older clients read it as INTERNAL.
 */
export class PushFailedError extends PetalError {
  static readonly code = 'PUSH_FAILED'
  override readonly name = 'PushFailedError'
  constructor (message: string, options?: ErrorOptions) { super('PUSH_FAILED', message, options) }
}

/** An operation ran past its deadline. */
export class TimeoutError extends PetalError {
  static readonly code = 'TIMEOUT'
  override readonly name = 'TimeoutError'
  constructor (message: string, options?: ErrorOptions) { super('TIMEOUT', message, options) }
}

/** The operation was cancelled by its caller. */
export class CancelledError extends PetalError {
  static readonly code = 'CANCELLED'
  override readonly name = 'CancelledError'
  constructor (message: string, options?: ErrorOptions) { super('CANCELLED', message, options) }
}

/**
 * Error frame as sent on the wire (also the `error` message of the inference
 * protocol). `code` is a string so that a newer peer's unknown code still parses.
 */
export interface ErrorFrame {
  type: 'error'
  /** Run that failed; absent when the failure concerns the stream or session. */
  runId?: number
  code: string
  message: string
  /** Only with code GAP: the first position not in the server's cache. */
  cacheEnd?: number
}

/**
 * Turns any thrown value into an error frame. A non-Petal error becomes
 * INTERNAL with its message; messages are cut to MAX_TEXT_LENGTH characters.
 */
export function toErrorFrame (err: unknown, runId?: number): ErrorFrame {
  const frame: ErrorFrame = { type: 'error', code: 'INTERNAL', message: 'Internal error' }
  if (runId !== undefined) frame.runId = runId
  if (err instanceof PetalError) {
    frame.code = err.code
    frame.message = err.message
    if (err instanceof GapError) frame.cacheEnd = err.cacheEnd
  } else if (err instanceof Error) {
    frame.message = err.message
  } else if (typeof err === 'string') {
    frame.message = err
  }
  if (frame.message.length > MAX_TEXT_LENGTH) frame.message = frame.message.slice(0, MAX_TEXT_LENGTH - 3) + '...'
  return frame
}

const FACTORIES: Record<ErrorCode, (message: string, frame: ErrorFrame) => PetalError> = {
  BAD_MESSAGE: (m) => new BadMessageError(m),
  BAD_SHAPE: (m) => new BadShapeError(m),
  TOO_LARGE: (m) => new TooLargeError(m),
  UNKNOWN_SESSION: (m) => new UnknownSessionError(m),
  SESSION_LIMIT: (m) => new SessionLimitError(m),
  CACHE_LIMIT: (m) => new CacheLimitError(m),
  GAP: (m, f) => new GapError(m, f.cacheEnd ?? 0),
  WRONG_SPAN: (m) => new WrongSpanError(m),
  DRAINING: (m) => new DrainingError(m),
  INTERNAL: (m) => new InternalError(m),
  TIMEOUT: (m) => new TimeoutError(m),
  CANCELLED: (m) => new CancelledError(m),
  PUSH_FAILED: (m) => new PushFailedError(m)
}

/**
 * Rebuilds the error class named by a (parsed) error frame. An unknown code
 * from a newer peer becomes an InternalError that names it.
 */
export function errorFromFrame (frame: ErrorFrame): PetalError {
  if (!isErrorCode(frame.code)) {
    return new InternalError(`Remote error with unknown code ${frame.code}: ${frame.message}`)
  }
  return FACTORIES[frame.code](frame.message, frame)
}
