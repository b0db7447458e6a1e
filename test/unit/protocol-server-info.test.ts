import { describe, expect, it } from 'vitest'
import { encodeFrame, FrameDecoder } from '../../protocol/frames.js'
import { parseInfoRequest, parseServerInfo, type ServerInfo } from '../../protocol/server-info.js'

const info: ServerInfo = {
  peerId: '12D3KooWexample',
  addrs: ['/ip4/127.0.0.1/tcp/4001'],
  modelId: 'TinyLlama/TinyLlama-1.1B',
  numBlocks: 22,
  start: 4,
  end: 6,
  state: 'online',
  throughput: { decodeTokensPerSec: 850.5, prefillTokensPerSec: 12000 },
  freeCacheTokens: 65536,
  openSessions: 1,
  maxSessions: 16,
  device: 'cpu',
  version: '0.1.0',
  blockHashes: ['a'.repeat(64), '0123456789abcdef'.repeat(4)],
  updatedAt: 1_760_000_000_000
}
const wire = (v: unknown): unknown => new FrameDecoder().push(encodeFrame(v))[0]
const code = (c: string): ReturnType<typeof expect.objectContaining> => expect.objectContaining({ code: c })

describe('server info', () => {
  it('round-trips through a frame', () => {
    expect(parseServerInfo(wire(info))).toEqual(info)
    expect(parseServerInfo(wire({ ...info, rttHint: 12.5 })).rttHint).toBe(12.5)
    expect(parseServerInfo(wire({ ...info, quantization: 'int4' })).quantization).toBe('int4')
    expect(parseServerInfo(wire({ ...info, quantization: 'int8' })).quantization).toBe('int8')
    expect(parseInfoRequest(wire({ type: 'info' }))).toEqual({ type: 'info' })
  })

  it('metrics: the load figures are optional (older servers lack them) and checked when present', () => {
    const metrics = { runsComputed: 5, runsDroppedBeforeStart: 1, runsAbortedMidRun: 0, runsDroppedLate: 2 }
    expect(parseServerInfo(wire({ ...info, metrics })).metrics).toEqual(metrics)
    expect(parseServerInfo(wire({ ...info, metrics: { ...metrics, runsRefused: 3, queuedRuns: 7 } })).metrics).toEqual({ ...metrics, runsRefused: 3, queuedRuns: 7 })
    expect(() => parseServerInfo(wire({ ...info, metrics: { ...metrics, queuedRuns: -1 } }))).toThrow(/metrics\.queuedRuns/)
    expect(parseServerInfo(wire({ ...info, metrics: { ...metrics, runsBatched: 4 } })).metrics?.runsBatched).toBe(4)
    expect(() => parseServerInfo(wire({ ...info, metrics: { ...metrics, runsBatched: 1.5 } }))).toThrow(/metrics\.runsBatched/)
  })

  const bad: Array<[string, unknown]> = [
    ['request with another type', { type: 'infos' }],
    ['missing peerId', { ...info, peerId: undefined }],
    ['addrs not strings', { ...info, addrs: [1] }],
    ['numBlocks 0', { ...info, numBlocks: 0, start: 0, end: 0 }],
    ['end past numBlocks', { ...info, end: 23, blockHashes: Array(19).fill('a'.repeat(64)) }],
    ['start past end', { ...info, start: 6, end: 6, blockHashes: [] }],
    ['unknown state', { ...info, state: 'offline' }],
    ['throughput missing', { ...info, throughput: undefined }],
    ['throughput negative', { ...info, throughput: { decodeTokensPerSec: -1, prefillTokensPerSec: 1 } }],
    ['negative free cache', { ...info, freeCacheTokens: -5 }],
    ['fractional sessions', { ...info, openSessions: 0.5 }],
    ['one hash too few', { ...info, blockHashes: ['a'.repeat(64)] }],
    ['uppercase hash', { ...info, blockHashes: ['A'.repeat(64), 'a'.repeat(64)] }],
    ['short hash', { ...info, blockHashes: ['abc', 'a'.repeat(64)] }],
    ['rttHint string', { ...info, rttHint: '5' }],
    ['updatedAt missing', { ...info, updatedAt: undefined }],
    ['unknown quantization', { ...info, quantization: 'int3' }]
  ]
  for (const [name, value] of bad) {
    it(`rejects ${name} with BAD_MESSAGE`, () => {
      const parse = name.startsWith('request') ? parseInfoRequest : parseServerInfo
      expect(() => parse(value)).toThrow(code('BAD_MESSAGE'))
    })
  }

  it('states the span in hash-count errors', () => {
    expect(() => parseServerInfo({ ...info, blockHashes: [] }))
      .toThrow('Invalid serverInfo.blockHashes: expected 2 entries (one per block of [4, 6)), got 0')
  })
})
