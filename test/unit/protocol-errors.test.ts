import { describe, expect, it } from 'vitest'
import {
  BadMessageError, BadShapeError, CacheLimitError, CancelledError, DrainingError, ERROR_CODES, errorFromFrame, GapError,
  InternalError, isErrorCode, PetalError, PushFailedError, SessionLimitError, TimeoutError, toErrorFrame, TooLargeError,
  UnknownSessionError, WrongSpanError
} from '../../protocol/errors.js'
import { encodeFrame, FrameDecoder } from '../../protocol/frames.js'
import { parseErrorFrame } from '../../protocol/inference-replies.js'

const all: PetalError[] = [
  new BadMessageError('m'), new BadShapeError('m'), new TooLargeError('m'), new UnknownSessionError('m'),
  new SessionLimitError('m'), new CacheLimitError('m'), new GapError('m', 17), new WrongSpanError('m'),
  new DrainingError('m'), new InternalError('m'), new TimeoutError('m'), new CancelledError('m'), new PushFailedError('m')
]

describe('errors', () => {
  it('has one class per code', () => {
    expect(all.map((e) => e.code).sort()).toEqual([...ERROR_CODES].sort())
    for (const e of all) {
      expect(e).toBeInstanceOf(PetalError)
      expect(e).toBeInstanceOf(Error)
      expect(e.name).toMatch(/Error$/)
      expect(e.name).not.toBe('PetalError')
      expect((e.constructor as unknown as { code: string }).code).toBe(e.code)
    }
  })

  it('round-trips class, code and cacheEnd through a real frame', () => {
    for (const err of all) {
      const [wire] = new FrameDecoder().push(encodeFrame(toErrorFrame(err, 5)))
      const back = errorFromFrame(parseErrorFrame(wire))
      expect(back.constructor).toBe(err.constructor)
      expect(back.code).toBe(err.code)
      expect(back.name).toBe(err.name)
      expect(back.message).toBe('m')
      expect(back.retryable).toBe(err.retryable)
    }
    const gap = errorFromFrame(toErrorFrame(new GapError('gap at 17', 17)))
    expect(gap).toBeInstanceOf(GapError)
    expect((gap as GapError).cacheEnd).toBe(17)
  })

  it('marks server-state failures retryable and caller bugs not', () => {
    const retryable = all.filter((e) => e.retryable).map((e) => e.code).sort()
    expect(retryable).toEqual(['CACHE_LIMIT', 'DRAINING', 'INTERNAL', 'PUSH_FAILED', 'SESSION_LIMIT', 'TIMEOUT'])
    expect(new BadMessageError('x').retryable).toBe(false)
    expect(new BadShapeError('x').retryable).toBe(false)
  })

  it('turns foreign errors into INTERNAL and keeps the run id', () => {
    expect(toErrorFrame(new TypeError('boom'), 3)).toEqual({ type: 'error', runId: 3, code: 'INTERNAL', message: 'boom' })
    expect(toErrorFrame('text')).toEqual({ type: 'error', code: 'INTERNAL', message: 'text' })
    expect(toErrorFrame(42).code).toBe('INTERNAL')
    expect(toErrorFrame(new Error('x'.repeat(10_000))).message.length).toBeLessThanOrEqual(4096)
  })

  it('maps an unknown code from a newer peer to InternalError', () => {
    const err = errorFromFrame({ type: 'error', code: 'QUOTA', message: 'over quota' })
    expect(err).toBeInstanceOf(InternalError)
    expect(err.message).toContain('QUOTA')
    expect(isErrorCode('QUOTA')).toBe(false)
    expect(isErrorCode('GAP')).toBe(true)
  })

  it('keeps the cause', () => {
    const cause = new Error('inner')
    expect(new InternalError('outer', { cause }).cause).toBe(cause)
  })
})
