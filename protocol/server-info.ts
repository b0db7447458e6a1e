/**
 * ServerInfo: what a server answers on /petal/1/info. The DHT only says who
 * may serve a block; liveness, span, speed and load come from here.
 */
import { BadMessageError } from './errors.js'
import { MAX_ID_LENGTH, MAX_TEXT_LENGTH } from './limits.js'
import {
  expectFields, expectType, readEnum, readInt, readList, readNumber, readOptInt, readOptNumber, readString, stringItem
} from './validate.js'

/** Most entries of ServerInfo.knownServers. */
export const MAX_KNOWN_SERVERS = 32

/** Lifecycle state of a server. */
export type ServerState = 'joining' | 'online' | 'draining'

/** Every ServerState. */
export const SERVER_STATES: readonly ServerState[] = ['joining', 'online', 'draining']

/** Weight formats a server may announce (ServerInfo.quantization). */
export type WeightQuantization = 'int8' | 'int4'
export const WEIGHT_QUANTIZATIONS: readonly WeightQuantization[] = ['int8', 'int4']

/**
 * Measured speed of ONE block on this server (span time ~ blocks / speed).
 * Both in tokens per second per block; 0 means not measured yet.
 */
export interface Throughput {
  /** Decode: single-token forward passes per second through one block (tokens/s/block). */
  decodeTokensPerSec: number
  /** Prefill: tokens per second through one block when a run carries a long prompt (tokens/s/block). */
  prefillTokensPerSec: number
}

/** A server's self-description, as answered on /petal/1/info. */
export interface ServerInfo {
  peerId: string
  /** Multiaddrs the server listens on, as strings. */
  addrs: string[]
  modelId: string
  /** Blocks of the whole model. */
  numBlocks: number
  /** Served span [start, end), 0 <= start < end <= numBlocks. */
  start: number
  end: number
  state: ServerState
  throughput: Throughput
  /** Optional round-trip hint in ms (e.g. the server's own measurement toward the asker). */
  rttHint?: number
  /** Cache positions (tokens) that a new session could still get. */
  freeCacheTokens: number
  openSessions: number
  maxSessions: number
  /** Execution device, e.g. "cpu", "webgpu", "cuda:0". */
  device: string
  /** Petal software version (PETAL_VERSION). */
  version: string
  /** sha256 hex (64 lowercase chars) of each served block's weights: (end - start) entries. */
  blockHashes: string[]
  /** When this info was produced, ms since the Unix epoch. */
  updatedAt: number
  /** Run counters since the server started (optional: older servers omit them). */
  metrics?: ServerMetrics
  /**
   * Blocks per ORT session on this server (default 1). A session must start and end on a
   * multiple of it from the span's start (or at the span's end): routes cut only there.
   */
  graphBlocks?: number
  /**
   * How the server holds its blocks' weights when not as in the checkpoint: "int8" or "int4"
   * (8- or 4-bit blocks, model/quantize.ts), whose outputs are close to, not equal to, float32's.
   * Absent: float32.
   */
  quantization?: WeightQuantization
  /**
   * Full multiaddrs (with /p2p/) of other Petal servers this one is connected to: peer
   * exchange, so that clients find servers even where the DHT has not spread their records.
   */
  knownServers?: string[]
}

/**
 * What a server did with the runs it was sent, since it started. Early
 * cancellation shows as runsDroppedBeforeStart (never computed).
 */
export interface ServerMetrics {
  /** Runs computed to the end. */
  runsComputed: number
  /** Runs cancelled while queued: never computed. */
  runsDroppedBeforeStart: number
  /** Runs cancelled while computing: stopped between blocks. */
  runsAbortedMidRun: number
  /** Runs that arrived after their cancel: dropped on arrival. */
  runsDroppedLate: number
  /** Runs refused because their session already had the most waiting runs allowed (absent from older servers). */
  runsRefused?: number
  /** Runs waiting to start now, all sessions together (absent from older servers). */
  queuedRuns?: number
  /** Runs computed in one pass with other sessions' runs (batched decode; optional: older servers omit it). */
  runsBatched?: number
  /** Sessions that took another session's prefix as a copy (`adopt`) instead of computing it (absent from older servers). */
  prefixesAdopted?: number
}

/** Request for a ServerInfo. The reply is one frame: a ServerInfo, or an error frame (type 'error'). */
export interface InfoRequest {
  type: 'info'
}

const SHA256_HEX = /^[0-9a-f]{64}$/

/** Parses an info request. */
export function parseInfoRequest (value: unknown): InfoRequest {
  expectType(expectFields(value, 'info'), 'info', 'info')
  return { type: 'info' }
}

/** Parses a ServerMetrics record. */
export function parseServerMetrics (value: unknown, what = 'metrics'): ServerMetrics {
  const obj = expectFields(value, what)
  const metrics: ServerMetrics = {
    runsComputed: readInt(obj, 'runsComputed', what),
    runsDroppedBeforeStart: readInt(obj, 'runsDroppedBeforeStart', what),
    runsAbortedMidRun: readInt(obj, 'runsAbortedMidRun', what),
    runsDroppedLate: readInt(obj, 'runsDroppedLate', what)
  }
  const runsRefused = readOptInt(obj, 'runsRefused', what)
  if (runsRefused !== undefined) metrics.runsRefused = runsRefused
  const queuedRuns = readOptInt(obj, 'queuedRuns', what)
  if (queuedRuns !== undefined) metrics.queuedRuns = queuedRuns
  const runsBatched = readOptInt(obj, 'runsBatched', what)
  if (runsBatched !== undefined) metrics.runsBatched = runsBatched
  const prefixesAdopted = readOptInt(obj, 'prefixesAdopted', what)
  if (prefixesAdopted !== undefined) metrics.prefixesAdopted = prefixesAdopted
  return metrics
}

/** Parses a Throughput record. */
export function parseThroughput (value: unknown, what = 'throughput'): Throughput {
  const obj = expectFields(value, what)
  return {
    decodeTokensPerSec: readNumber(obj, 'decodeTokensPerSec', what),
    prefillTokensPerSec: readNumber(obj, 'prefillTokensPerSec', what)
  }
}

/**
 * Parses a ServerInfo; BAD_MESSAGE on a wrong type, a span outside
 * [0, numBlocks), or blockHashes that are not one sha256 hex per served block.
 */
export function parseServerInfo (value: unknown): ServerInfo {
  const what = 'serverInfo'
  const obj = expectFields(value, what)
  const numBlocks = readInt(obj, 'numBlocks', what, 1)
  const start = readInt(obj, 'start', what, 0, numBlocks - 1)
  const end = readInt(obj, 'end', what, start + 1, numBlocks)
  const blockHashes = readList(obj, 'blockHashes', what, stringItem(64, SHA256_HEX, '64 lowercase hex characters (sha256)'))
  if (blockHashes.length !== end - start) {
    throw new BadMessageError(`Invalid ${what}.blockHashes: expected ${end - start} entries (one per block of [${start}, ${end})), got ${blockHashes.length}`)
  }
  const info: ServerInfo = {
    peerId: readString(obj, 'peerId', what, MAX_ID_LENGTH),
    addrs: readList(obj, 'addrs', what, stringItem(MAX_TEXT_LENGTH), 64),
    modelId: readString(obj, 'modelId', what, MAX_ID_LENGTH),
    numBlocks,
    start,
    end,
    state: readEnum(obj, 'state', what, SERVER_STATES),
    throughput: parseThroughput(obj['throughput'], `${what}.throughput`),
    freeCacheTokens: readInt(obj, 'freeCacheTokens', what),
    openSessions: readInt(obj, 'openSessions', what),
    maxSessions: readInt(obj, 'maxSessions', what),
    device: readString(obj, 'device', what, MAX_ID_LENGTH),
    version: readString(obj, 'version', what, MAX_ID_LENGTH),
    blockHashes,
    updatedAt: readNumber(obj, 'updatedAt', what)
  }
  const rttHint = readOptNumber(obj, 'rttHint', what)
  if (rttHint !== undefined) info.rttHint = rttHint
  if (obj['metrics'] != null) info.metrics = parseServerMetrics(obj['metrics'], `${what}.metrics`)
  if (obj['knownServers'] != null) info.knownServers = readList(obj, 'knownServers', what, stringItem(MAX_TEXT_LENGTH), MAX_KNOWN_SERVERS)
  const graphBlocks = readOptInt(obj, 'graphBlocks', what, 1)
  if (graphBlocks !== undefined) info.graphBlocks = graphBlocks
  if (obj['quantization'] != null) info.quantization = readEnum(obj, 'quantization', what, WEIGHT_QUANTIZATIONS)
  return info
}
