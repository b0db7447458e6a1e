/** Options of a PetalServer, in one record. */
import type { PrivateKey } from '@libp2p/interface'
import type { Logger } from 'pino'
import type { Device } from '../model/ort-session.js'
import type { Quantization } from '../model/quantize.js'
import type { Limits } from '../protocol/limits.js'
import type { Throughput } from '../protocol/server-info.js'
import type { SimulatedCompute } from './session-manager.js'

/** Options of a PetalServer. Give exactly one of `blocks` and `numBlocks`. */
export interface PetalServerInit {
  /** Hugging Face checkpoint folder. */
  modelDir: string
  /** Serve blocks [start, end). */
  blocks?: { start: number, end: number }
  /** Serve this many blocks, where the swarm covers the model worst. */
  numBlocks?: number
  /** Model id in the DHT and in sessions; default: the checkpoint folder's name. */
  modelId?: string
  /** Multiaddrs to listen on (default one TCP port on 127.0.0.1). */
  listen?: string[]
  /** Multiaddrs others should dial instead of the listen addresses (behind NAT with a port forward, in a container). */
  announce?: string[]
  /**
   * Also relay connections to servers that cannot be dialed directly (behind NAT), at most
   * this many of them at once (they listen on `<this server's address>/p2p-circuit`). Default: not a relay.
   */
  relayReservations?: number
  /** How long start() waits for an address when it listens only through a relay, ms (default 30 s). */
  addressWaitMs?: number
  /** Multiaddrs (with /p2p/<id>) of nodes already in the swarm. */
  bootstrap?: string[]
  /** Execution device (default cpu); a missing one falls back to cpu. */
  device?: Device
  /**
   * Blocks per ORT session (default 1: any sub-span of the span can be served). More cuts
   * per-run overhead on many-core machines, but sessions must then start and end on those
   * boundaries (announced in info.graphBlocks, respected by clients' routing).
   */
  graphBlocks?: number
  /** Intra-op threads per ORT session (default: onnxruntime's choice, one per core). */
  threads?: number
  /**
   * Hold the blocks quantized: "int8" keeps their weights in about 29% of float32's bytes, "int4"
   * 16% (a 200M server's 12 blocks: 0.42x and 0.35x of the RSS), and both decode faster where memory bandwidth bounds it, with outputs close to, not equal to,
   * float32's (announced in info.quantization; clients may refuse such servers). CPU and webgpu.
   * Default "none".
   */
  quantization?: Quantization
  /**
   * Most sessions' decode runs computed together in one pass over the weights (default 8;
   * 1: every run alone). On webgpu batched sessions share one set of device tensors for their
   * caches (an arena), and a small graph gathers the caches of sessions that come from
   * different ones (model/gpu/gpu-kv-gather.ts).
   */
  maxBatch?: number
  /** Most sessions open at once (default 16). */
  maxSessions?: number
  /** Cache positions all sessions together may reserve (default 16384). */
  cacheTokens?: number
  /** Persistent identity (see loadOrCreateIdentity); a fresh one when absent. */
  privateKey?: PrivateKey
  /** Time between DHT announcements, ms (default 120 s). */
  announceIntervalMs?: number
  /** Simulated one-way latency of every frame this server sends, ms (default 0). */
  linkLatencyMs?: number
  /** Compute per piece of a long run, ms (default 200: SessionManager's PIECE_TARGET_MS); 0: every run whole. */
  pieceMs?: number
  /** Simulated extra device time per run and per row (benchmarks; see SimulatedCompute). */
  simulatedCompute?: SimulatedCompute
  /**
   * Leave the swarm (closing every session, then `closed` resolves) when one batch of runs has
   * computed this long, ms, while the event loop was free: stuck compute, which answers pings
   * but finishes nothing. Default 60 s; 0: never.
   */
  stuckAfterMs?: number
  /** Wire limits (frame bytes, tensor elements, tokens per run). */
  limits?: Partial<Limits>
  /** On stop, how long queued runs may still finish, ms (default 2000). */
  drainGraceMs?: number
  /** Use this instead of measuring at start (tests). */
  throughput?: Throughput
  /** With numBlocks: how long the swarm lookup may take, ms (default 5000). */
  discoveryTimeoutMs?: number
  /** With numBlocks: longest random wait before looking at the swarm, ms (default 1000). */
  maxStartDelayMs?: number
  /**
   * With numBlocks: look at the swarm again every 0.5-1.5 times this, ms, and move to the
   * blocks it serves worst when that lifts its slowest block by rebalanceMinGain (Petals'
   * rebalancing). Default 0: never.
   */
  rebalanceIntervalMs?: number
  /** How much a move must lift the swarm's slowest block, as a factor (default 1.25). */
  rebalanceMinGain?: number
  /** Weights loaded so far, bytes (for a progress bar). */
  onProgress?: (done: number, total: number) => void
  /** Root logger; silent when absent. */
  logger?: Logger
}
