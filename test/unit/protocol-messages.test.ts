import { describe, expect, it } from 'vitest'
import { encodeFrame, FrameDecoder } from '../../protocol/frames.js'
import { assertHiddenSize } from '../../protocol/hidden.js'
import {
  parseAdopt, parseCancel, parseClientMessage, parseClose, parseOpen, parseRun
} from '../../protocol/inference-requests.js'
import { parseAdopted, parseErrorFrame, parseNotice, parseOpened, parseProgress, parseResult, parseServerMessage } from '../../protocol/inference-replies.js'
import { parsePush } from '../../protocol/push-message.js'
import { encodeTensor } from '../../protocol/tensor-codec.js'

/** Messages go through real frames so that the validators see what the wire gives them. */
function wire (msg: unknown): unknown {
  const [out] = new FrameDecoder().push(encodeFrame(msg))
  return out
}
const hidden = (t = 2, c = 4, dtype: 'float32' | 'float16' = 'float32'): ReturnType<typeof encodeTensor> =>
  encodeTensor(new Float32Array(t * c).fill(0.5), [1, t, c], dtype)
const code = (c: string): ReturnType<typeof expect.objectContaining> => expect.objectContaining({ code: c })

const open = { type: 'open', modelId: 'TinyLlama/TinyLlama-1.1B', start: 0, end: 11, maxTokens: 2048 }
/** A real Ed25519 peer id: push hops must name one. */
const PEER = '12D3KooWKAcr9r2QfpMZ4XP8VPkf9NsPaJ2SaYHTzAUgbt2dU1gN'
const run = { type: 'run', runId: 3, start: 10, hidden: hidden(), push: [{ peerId: PEER, sessionId: 's-1' }] }
const cancel = { type: 'cancel', runIds: [4, 5] }
const adopt = { type: 'adopt', runId: 7, fromSessionId: 's-0', length: 12 }
const adopted = { type: 'adopted', runId: 7, length: 12 }
const opened = { type: 'opened', sessionId: 's-1', start: 0, end: 11, maxTokens: 2048 }
const result = { type: 'result', runId: 3, start: 10, hidden: hidden(), computeMs: 1.5, queuedMs: 0 }
const push = { type: 'push', sessionId: 's-2', runId: 3, start: 10, hidden: hidden(2, 4, 'float16'), push: [] }

describe('inference messages', () => {
  it('accept well-formed messages from the wire', () => {
    expect(parseOpen(wire(open))).toEqual(open)
    const r = parseRun(wire(run))
    expect(r).toMatchObject({ type: 'run', runId: 3, start: 10, replyOutput: true, push: run.push })
    expect(r.hidden.dims).toEqual([1, 2, 4])
    expect(parseRun(wire({ ...run, push: undefined, replyOutput: false }))).not.toHaveProperty('push')
    expect(parseRun(wire({ ...run, replyOutput: false })).replyOutput).toBe(false)
    expect(parseRun(wire({ ...run, parents: [-1, -1] })).parents).toEqual([-1, -1]) // a token tree: two siblings
    expect(parsePush(wire({ ...push, parents: [-1, -1] })).parents).toEqual([-1, -1])
    expect(parseRun(wire(run))).not.toHaveProperty('parents')
    expect(parseCancel(wire(cancel))).toEqual(cancel)
    expect(parseCancel(wire({ type: 'cancel', runIds: [], fromRunId: 9 }))).toEqual({ type: 'cancel', runIds: [], fromRunId: 9 })
    expect(parseClose(wire({ type: 'close' }))).toEqual({ type: 'close' })
    expect(parseAdopt(wire(adopt))).toEqual(adopt)
    expect(parseAdopted(wire(adopted))).toEqual(adopted)
    expect(parseOpened(wire(opened))).toEqual(opened)
    expect(parseResult(wire(result))).toMatchObject({ runId: 3, computeMs: 1.5, queuedMs: 0 })
    expect(parseNotice(wire({ type: 'notice', state: 'draining' }))).toEqual({ type: 'notice', state: 'draining' })
    expect(parseErrorFrame(wire({ type: 'error', runId: 3, code: 'GAP', message: 'gap', cacheEnd: 8 })))
      .toEqual({ type: 'error', runId: 3, code: 'GAP', message: 'gap', cacheEnd: 8 })
    expect(parsePush(wire(push)).hidden.dtype).toBe('float16')
  })

  it('carry outputs along a push chain: run.carry, push.carried, result.carried, opened.carriesOutputs', () => {
    expect(parseRun(wire({ ...run, carry: true })).carry).toBe(true)
    expect(parseRun(wire(run))).not.toHaveProperty('carry')
    expect(parseRun(wire({ ...run, carry: false }))).not.toHaveProperty('carry')
    const carriedPush = parsePush(wire({ ...push, carried: [hidden(2, 4, 'float16'), hidden(2, 4, 'float16')] }))
    expect(carriedPush.carried?.map(t => t.dims)).toEqual([[1, 2, 4], [1, 2, 4]])
    expect(parsePush(wire({ ...push, carried: [] })).carried).toEqual([]) // from the first hop
    expect(parsePush(wire(push))).not.toHaveProperty('carried')
    expect(parseResult(wire({ ...result, carried: [hidden()] })).carried?.[0]?.dims).toEqual([1, 2, 4])
    expect(parseResult(wire(result))).not.toHaveProperty('carried')
    expect(parseOpened(wire({ ...opened, carriesOutputs: true }))).toEqual({ ...opened, carriesOutputs: true })
    expect(parseOpened(wire(opened))).not.toHaveProperty('carriesOutputs') // an older server
  })

  it('progress of a long run: open.progress asks for it, `progress` frames report rows done', () => {
    expect(parseOpen(wire({ ...open, progress: true }))).toEqual({ ...open, progress: true })
    expect(parseOpen(wire(open))).not.toHaveProperty('progress') // an older client
    expect(parseProgress(wire({ type: 'progress', runId: 3, rows: 128 }))).toEqual({ type: 'progress', runId: 3, rows: 128 })
    expect(parseServerMessage(wire({ type: 'progress', runId: 3, rows: 1 })).type).toBe('progress')
  })

  it('dispatch on type', () => {
    expect(parseClientMessage(wire(open)).type).toBe('open')
    expect(parseClientMessage(wire(run)).type).toBe('run')
    expect(parseClientMessage(wire(cancel)).type).toBe('cancel')
    expect(parseClientMessage(wire(adopt)).type).toBe('adopt')
    expect(parseServerMessage(wire(adopted)).type).toBe('adopted')
    expect(parseClientMessage(wire({ type: 'close' })).type).toBe('close')
    expect(parseServerMessage(wire(opened)).type).toBe('opened')
    expect(parseServerMessage(wire(result)).type).toBe('result')
    expect(parseServerMessage(wire({ type: 'error', code: 'X', message: '' })).type).toBe('error')
    expect(parseServerMessage(wire({ type: 'notice', state: 'draining' })).type).toBe('notice')
    expect(() => parseClientMessage(wire({ type: 'opened' }))).toThrow(code('BAD_MESSAGE'))
    expect(() => parseClientMessage(wire({ type: 'opened' })))
      .toThrow('Invalid message.type: expected one of open, run, adopt, cancel, close, got string "opened"')
    expect(() => parseServerMessage(wire({ type: 'run' }))).toThrow(code('BAD_MESSAGE'))
    expect(() => parseClientMessage([1, 2])).toThrow(code('BAD_MESSAGE'))
    expect(() => parseClientMessage(null)).toThrow(code('BAD_MESSAGE'))
  })

  const bad: Array<[string, () => unknown, string]> = [
    ['open: wrong type tag', () => parseOpen({ ...open, type: 'run' }), 'BAD_MESSAGE'],
    ['open: missing modelId', () => parseOpen({ ...open, modelId: undefined }), 'BAD_MESSAGE'],
    ['open: empty modelId', () => parseOpen({ ...open, modelId: '' }), 'BAD_MESSAGE'],
    ['open: modelId number', () => parseOpen({ ...open, modelId: 5 }), 'BAD_MESSAGE'],
    ['open: negative start', () => parseOpen({ ...open, start: -1 }), 'BAD_MESSAGE'],
    ['open: end <= start', () => parseOpen({ ...open, start: 4, end: 4 }), 'BAD_MESSAGE'],
    ['open: fractional end', () => parseOpen({ ...open, end: 2.5 }), 'BAD_MESSAGE'],
    ['open: maxTokens 0', () => parseOpen({ ...open, maxTokens: 0 }), 'BAD_MESSAGE'],
    ['open: maxTokens string', () => parseOpen({ ...open, maxTokens: '2048' }), 'BAD_MESSAGE'],
    ['open: bigint start', () => parseOpen({ ...open, start: 1n }), 'BAD_MESSAGE'],
    ['run: negative runId', () => parseRun({ ...run, runId: -1 }), 'BAD_MESSAGE'],
    ['run: missing start', () => parseRun({ ...run, start: undefined }), 'BAD_MESSAGE'],
    ['run: NaN start', () => parseRun({ ...run, start: NaN }), 'BAD_MESSAGE'],
    ['run: missing hidden', () => parseRun({ ...run, hidden: undefined }), 'BAD_MESSAGE'],
    ['run: hidden rank 2', () => parseRun({ ...run, hidden: encodeTensor(new Float32Array(8), [2, 4]) }), 'BAD_SHAPE'],
    ['run: hidden batch 2', () => parseRun({ ...run, hidden: encodeTensor(new Float32Array(8), [2, 1, 4]) }), 'BAD_SHAPE'],
    ['run: hidden T 0', () => parseRun({ ...run, hidden: encodeTensor(new Float32Array(0), [1, 0, 4]) }), 'BAD_SHAPE'],
    ['run: hidden bytes short', () => parseRun({ ...run, hidden: { ...hidden(), data: new Uint8Array(8) } }), 'BAD_SHAPE'],
    ['run: too many tokens', () => parseRun({ ...run, hidden: hidden(5, 2) }, { maxTokensPerRun: 4 }), 'TOO_LARGE'],
    ['run: too many elements', () => parseRun({ ...run, hidden: hidden(4, 4) }, { maxTensorElements: 8 }), 'TOO_LARGE'],
    ['run: push not a list', () => parseRun({ ...run, push: { peerId: PEER, sessionId: 'b' } }), 'BAD_MESSAGE'],
    ['run: push hop without sessionId', () => parseRun({ ...run, push: [{ peerId: PEER }] }), 'BAD_MESSAGE'],
    ['run: push hop whose peerId is no peer id', () => parseRun({ ...run, push: [{ peerId: '12D3KooWabc', sessionId: 'b' }] }), 'BAD_MESSAGE'],
    ['push: a hop whose peerId is no peer id', () => parsePush({ ...push, push: [{ peerId: 'QmNope', sessionId: 'b' }] }), 'BAD_MESSAGE'],
    ['run: push too long', () => parseRun({ ...run, push: Array(65).fill({ peerId: PEER, sessionId: 'b' }) }), 'BAD_MESSAGE'],
    ['run: replyOutput string', () => parseRun({ ...run, replyOutput: 'yes' }), 'BAD_MESSAGE'],
    ['run: parents not a list', () => parseRun({ ...run, parents: 0 }), 'BAD_MESSAGE'],
    ['run: parents of the wrong length', () => parseRun({ ...run, parents: [-1] }), 'BAD_MESSAGE'],
    ['run: a parent that is not earlier', () => parseRun({ ...run, parents: [-1, 1] }), 'BAD_MESSAGE'],
    ['run: a parent below -1', () => parseRun({ ...run, parents: [-2, 0] }), 'BAD_MESSAGE'],
    ['push: a parent that is not earlier', () => parsePush({ ...push, parents: [0, 0] }), 'BAD_MESSAGE'],
    ['cancel: runIds missing', () => parseCancel({ type: 'cancel' }), 'BAD_MESSAGE'],
    ['cancel: negative id', () => parseCancel({ type: 'cancel', runIds: [1, -2] }), 'BAD_MESSAGE'],
    ['cancel: string id', () => parseCancel({ type: 'cancel', runIds: ['1'] }), 'BAD_MESSAGE'],
    ['cancel: bad fromRunId', () => parseCancel({ type: 'cancel', runIds: [], fromRunId: -1 }), 'BAD_MESSAGE'],
    ['adopt: missing fromSessionId', () => parseAdopt({ ...adopt, fromSessionId: undefined }), 'BAD_MESSAGE'],
    ['adopt: length 0', () => parseAdopt({ ...adopt, length: 0 }), 'BAD_MESSAGE'],
    ['adopt: fractional length', () => parseAdopt({ ...adopt, length: 1.5 }), 'BAD_MESSAGE'],
    ['adopt: negative runId', () => parseAdopt({ ...adopt, runId: -1 }), 'BAD_MESSAGE'],
    ['adopted: length string', () => parseAdopted({ ...adopted, length: '12' }), 'BAD_MESSAGE'],
    ['close: wrong tag', () => parseClose({ type: 'closed' }), 'BAD_MESSAGE'],
    ['opened: missing sessionId', () => parseOpened({ ...opened, sessionId: undefined }), 'BAD_MESSAGE'],
    ['opened: end < start', () => parseOpened({ ...opened, start: 5, end: 2 }), 'BAD_MESSAGE'],
    ['result: negative computeMs', () => parseResult({ ...result, computeMs: -1 }), 'BAD_MESSAGE'],
    ['result: infinite queuedMs', () => parseResult({ ...result, queuedMs: Infinity }), 'BAD_MESSAGE'],
    ['result: hidden dims strings', () => parseResult({ ...result, hidden: { ...hidden(), dims: ['1', '2', '4'] } }), 'BAD_MESSAGE'],
    ['error: missing code', () => parseErrorFrame({ type: 'error', message: 'm' }), 'BAD_MESSAGE'],
    ['error: message number', () => parseErrorFrame({ type: 'error', code: 'GAP', message: 1 }), 'BAD_MESSAGE'],
    ['error: negative cacheEnd', () => parseErrorFrame({ type: 'error', code: 'GAP', message: '', cacheEnd: -4 }), 'BAD_MESSAGE'],
    ['notice: unknown state', () => parseNotice({ type: 'notice', state: 'online' }), 'BAD_MESSAGE'],
    ['open: progress a string', () => parseOpen({ ...open, progress: 'yes' }), 'BAD_MESSAGE'],
    ['progress: no rows done', () => parseProgress({ type: 'progress', runId: 3, rows: 0 }), 'BAD_MESSAGE'],
    ['progress: missing runId', () => parseProgress({ type: 'progress', rows: 4 }), 'BAD_MESSAGE'],
    ['push: missing push list', () => parsePush({ ...push, push: undefined }), 'BAD_MESSAGE'],
    ['push: missing sessionId', () => parsePush({ ...push, sessionId: undefined }), 'BAD_MESSAGE'],
    ['push: hidden inconsistent', () => parsePush({ ...push, hidden: { ...hidden(2, 4, 'float16'), dims: [1, 3, 4] } }), 'BAD_SHAPE'],
    ['run: carry string', () => parseRun({ ...run, carry: 'yes' }), 'BAD_MESSAGE'],
    ['push: carried not a list', () => parsePush({ ...push, carried: hidden(2, 4, 'float16') }), 'BAD_MESSAGE'],
    ['push: a carried output of other rows', () => parsePush({ ...push, carried: [hidden(3, 4, 'float16')] }), 'BAD_SHAPE'],
    ['push: a carried output of another dtype', () => parsePush({ ...push, carried: [hidden(2, 4, 'float32')] }), 'BAD_SHAPE'],
    ['push: a carried output whose bytes are short', () => parsePush({ ...push, carried: [{ ...hidden(2, 4, 'float16'), data: new Uint8Array(4) }] }), 'BAD_SHAPE'],
    ['push: more carried outputs than hops', () => parsePush({ ...push, carried: Array(65).fill(hidden(2, 4, 'float16')) }), 'BAD_MESSAGE'],
    ['result: a carried output of another hidden size', () => parseResult({ ...result, carried: [hidden(2, 8)] }), 'BAD_SHAPE'],
    ['opened: carriesOutputs number', () => parseOpened({ ...opened, carriesOutputs: 1 }), 'BAD_MESSAGE']
  ]
  for (const [name, parse, c] of bad) {
    it(`rejects ${name} with ${c}`, () => { expect(parse).toThrow(code(c)) })
  }

  it('states field, expectation and value', () => {
    expect(() => parseOpen({ ...open, start: -1 })).toThrow('Invalid open.start: expected an integer >= 0, got number -1')
    expect(() => parseOpen({ ...open, start: 4, end: 3 })).toThrow('Invalid open.end: expected an integer >= 5, got number 3')
    expect(() => parseRun({ ...run, push: [{ peerId: PEER }] })).toThrow('Invalid run.push[0].sessionId')
    expect(() => parseRun({ ...run, push: [{ peerId: 'a', sessionId: 'b' }] })).toThrow('Invalid run.push[0].peerId: "a" is no peer id')
    expect(() => parseCancel({ type: 'cancel', runIds: [1, 'x'] })).toThrow('Invalid cancel.runIds[1]: expected an integer >= 0, got string "x"')
    expect(() => parseRun({ ...run, hidden: hidden(5, 2) }, { maxTokensPerRun: 4 })).toThrow('Cannot accept run.hidden of 5 tokens: limit is 4 tokens per run')
  })

  it('checks the hidden size against the model', () => {
    const r = parseRun(run)
    expect(() => assertHiddenSize(r.hidden, 4)).not.toThrow()
    expect(() => assertHiddenSize(r.hidden, 8)).toThrow(code('BAD_SHAPE'))
  })
})
