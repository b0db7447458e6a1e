import { basename } from 'node:path'
import { Checkpoint } from '../model/checkpoint.js'
import { CLIENT_MANIFEST, readClientManifest, type ClientManifest } from '../model/client-export.js'
import { ClientParts } from '../model/client-parts.js'
import { CheckpointError } from '../model/errors.js'
import { LocalModel } from '../model/local-model.js'
import type { OrtOptions } from '../model/ort-session.js'
import type { Quantization } from '../model/quantize.js'
import { ChatTemplate } from './chat-template.js'
import { Conversation, type ConversationOptions } from './conversation.js'
import { newLogprobLog, SpeculationMemory, tokenLogprob, type TokenLogprob } from './decoding/index.js'
import { readGenerationConfig, type GenerationConfig } from './generation-config.js'
import { LocalTarget } from './local-target.js'
import { PrimedTarget, RowTap } from './primed-target.js'
import { sharedPromptGenerations } from './shared-prompt.js'
import { SwarmTarget } from './swarm/swarm-target.js'
import type { SwarmClient } from './swarm/swarm-client.js'
import type { WeightPolicy } from './swarm/server-directory.js'
import { forwardOnce, type TargetModel } from './target-model.js'
import { drainGeneration, generateText, type GenerateChunk, type GenerateOptions, type GenerationResult } from './text-generation.js'
import { Tokenizer } from './tokenizer/index.js'
import type { WireDtype } from '../protocol/tensor-codec.js'

const VERIFY_BYTES_BY_DEFAULT = 4 * 2 ** 30

/** How the target model of a new sequence is made: locally, or as a route through a swarm. */
type TargetFactory = (maxTokens: number) => Promise<TargetModel>

export interface SwarmModelOptions extends OrtOptions {
  /** Model id the servers announce; default: the one petal_client.json names (export-client), else the checkpoint folder's name. */
  modelId?: string
  /** Servers forward activations to each other (push mode). */
  push?: boolean
  /**
   * Push mode: a run's last server returns every server's output in one message when they
   * add at most this many bytes to it, instead of each server replying on its own: fewer
   * messages for the client, more bytes on the critical path. Default 0 (off); a client short
   * of CPU may gain from CARRY_SUGGESTED_BYTES (32 KiB).
   */
  carryMaxBytes?: number
  /** Activations on the wire: float32 (default) or float16. */
  wireDtype?: WireDtype
  /** Simulated one-way latency of the client's outgoing frames, ms (benchmarks). */
  sendDelayMs?: number
  /**
   * Send a long prompt as chunks that follow one another along the route, so that its servers
   * compute different chunks at once: true always, false never, 'auto' (default) where the
   * servers' announced speeds say it pays and no two of them share a host.
   */
  pipelinePrefill?: boolean | 'auto'
  /**
   * When some blocks have no server (at the start, or after the one holding them failed),
   * wait up to this long for the swarm to cover them (a server joining, or one moving
   * there), ms. Default 0: fail at once.
   */
  coverageWaitMs?: number
  /**
   * How far a route may stray from the cheapest to spread clients over near-equal servers:
   * each route plan scales each server's hop cost by a random factor in [1, 1 + this).
   * Default 0.1; 0: always the cheapest route.
   */
  routeJitter?: number
  /**
   * Refuse servers whose block weights hash differently from this checkpoint's (reads the
   * blocks once to hash them). Default: on when the folder holds every block's tensors and
   * they total at most 4 GiB (hashing a 70B checkpoint at every start would take minutes),
   * or when it is a folder of client parts whose petal_client.json lists the hashes.
   */
  verifyWeights?: boolean
  /**
   * Use only servers holding float32 weights: refuse those that announce quantized blocks
   * (`serve --quantize int8|int4`), whose outputs are close to, not equal to, the checkpoint's.
   * Default false.
   */
  exactWeightsOnly?: boolean
  /**
   * Hold the embedding and LM head as 8-bit blocks ("int8"): about 29% of their float32 bytes
   * (most of a client's memory for a big vocabulary) and a faster head; logits close to
   * float32's, not equal. Default "none".
   */
  clientQuantization?: 'none' | 'int8'
  /**
   * A run that has waited `afterMs` (default 2 s) gets its server pinged; no echo within
   * `timeoutMs` (default 3 s) and the server counts as failed (frozen), so its blocks move
   * elsewhere. false: only the 30 s result timeout and libp2p's connection monitor notice.
   */
  liveness?: { afterMs?: number, timeoutMs?: number } | false
  /**
   * Longest wait for a server's answer (a session opened, a run's result), ms: past it the
   * server counts as failed. A server computing a long run reports its progress about once a
   * second, and each report starts the wait over. Default 30 s.
   */
  timeoutMs?: number
}

export interface LocalModelOptions extends OrtOptions {
  /** Simulated one-way latency around every run, ms (benchmarks, tests). */
  oneWayLatencyMs?: number
  /** Blocks per ORT session (default 1; more: fewer runs per token). */
  blocksPerGraph?: number
  /** Hold the blocks as 8- or 4-bit weights ("int8", "int4"), as a server started with --quantize does. */
  quantization?: Quantization
}

/**
 * A language model as the SDK user sees it: tokenizer and generation settings from a
 * local checkpoint folder, and the transformer either run locally or through a swarm.
 */
export class LanguageModel {
  readonly tokenizer: Tokenizer
  readonly generationConfig: GenerationConfig
  readonly maxPositions: number
  /** The checkpoint's chat template (instruction-tuned models); undefined for a base model. */
  readonly chatTemplate: ChatTemplate | undefined
  /** What speculation learned in this model's generations: later ones start from it. */
  readonly speculationMemory = new SpeculationMemory()
  readonly #newTarget: TargetFactory
  readonly #release: () => Promise<void>

  private constructor (dir: string, maxPositions: number, newTarget: TargetFactory, release: () => Promise<void>) {
    this.tokenizer = Tokenizer.fromDir(dir)
    this.generationConfig = readGenerationConfig(dir)
    this.chatTemplate = ChatTemplate.fromDir(dir)
    this.maxPositions = maxPositions
    this.#newTarget = newTarget
    this.#release = release
  }

  /** The whole model on this machine. */
  static async local (dir: string, opts: LocalModelOptions = {}): Promise<LanguageModel> {
    const ckpt = Checkpoint.open(dir)
    const model = await LocalModel.load(ckpt, opts)
    const target: TargetFactory = async () => new LocalTarget(model, { oneWayLatencyMs: opts.oneWayLatencyMs ?? 0 })
    return new LanguageModel(dir, ckpt.config.maxPositions, target, async () => { await model.release() })
  }

  /** Tokenizer, embedding and LM head from `dir`; the blocks from the swarm's servers. */
  static async swarm (swarm: SwarmClient, dir: string, opts: SwarmModelOptions = {}): Promise<LanguageModel> {
    const ckpt = Checkpoint.open(dir)
    const parts = await ClientParts.load(ckpt, { ...opts, quantization: opts.clientQuantization ?? 'none' })
    // a folder of client parts only (petal-node export-client) names the model and its blocks' hashes
    const manifest = readClientManifest(dir)
    const modelId = opts.modelId ?? manifest?.modelId ?? basename(dir)
    const numBlocks = ckpt.config.numLayers
    if (manifest !== undefined && manifest.numBlocks !== numBlocks) throw new CheckpointError(`${dir}: ${CLIENT_MANIFEST} lists ${manifest.numBlocks} blocks, config.json has ${numBlocks}`)
    const directory = await swarm.directory(modelId, numBlocks)
    const expectedHashes = expectedBlockHashes(ckpt, manifest, opts.verifyWeights)
    const weights: WeightPolicy = { ...(expectedHashes !== undefined ? { expectedHashes } : {}), ...(opts.exactWeightsOnly === true ? { exactWeightsOnly: true } : {}) }
    const target: TargetFactory = async (maxTokens) => await SwarmTarget.open({
      host: swarm.host,
      directory,
      weights,
      rediscover: async () => { await swarm.refresh(modelId, numBlocks) },
      parts,
      modelId,
      maxTokens,
      ...(opts.push !== undefined ? { push: opts.push } : {}),
      ...(opts.carryMaxBytes !== undefined ? { carryMaxBytes: opts.carryMaxBytes } : {}),
      ...(opts.wireDtype !== undefined ? { wireDtype: opts.wireDtype } : {}),
      ...(opts.sendDelayMs !== undefined ? { sendDelayMs: opts.sendDelayMs } : {}),
      ...(opts.pipelinePrefill !== undefined ? { pipelinePrefill: opts.pipelinePrefill } : {}),
      ...(opts.coverageWaitMs !== undefined ? { coverageWaitMs: opts.coverageWaitMs } : {}),
      ...(opts.routeJitter !== undefined ? { routeJitter: opts.routeJitter } : {}),
      ...(opts.liveness !== undefined ? { liveness: opts.liveness } : {}),
      ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}),
      ...(swarm.logger !== undefined ? { logger: swarm.logger } : {})
    })
    return new LanguageModel(dir, ckpt.config.maxPositions, target, async () => { await parts.release() })
  }

  /** Encodes a prompt the way the checkpoint says (BOS included when it asks for one). */
  encode (prompt: string): number[] {
    return this.tokenizer.encode(prompt)
  }

  /**
   * Streams the continuation of `prompt` as text chunks; the generator's return value
   * holds the whole text, token ids and stats.
   */
  async * generate (prompt: string | readonly number[], opts: GenerateOptions = {}): AsyncGenerator<GenerateChunk, GenerationResult> {
    const session = await this.session({ maxTokens: this.maxPositions })
    try {
      return yield * session.generate(prompt, opts)
    } finally {
      await session.close()
    }
  }

  /**
   * `n` continuations of one prompt at once, each on a session of its own, so the servers
   * compute their runs together: the first session computes the prompt, and the others copy
   * its caches and the logits after it once that run is back (client/shared-prompt.ts), so
   * their first token costs no run. With a `seed`, continuation i samples with seed + i (as
   * the API's `n` choices do). Resolves with the n results, in order; the first failure stops
   * the others.
   */
  async generateMany (prompt: string | readonly number[], n: number, opts: GenerateOptions = {}): Promise<GenerationResult[]> {
    if (!(Number.isInteger(n) && n >= 1)) throw new RangeError(`Cannot generate ${n} continuations: n must be an integer >= 1`)
    const ids = typeof prompt === 'string' ? this.encode(prompt) : [...prompt]
    if (ids.length === 0) throw new Error('Cannot generate from an empty prompt: it has no tokens')
    const stop = new AbortController()
    const signal = opts.signal === undefined ? stop.signal : AbortSignal.any([opts.signal, stop.signal])
    const opened = await Promise.allSettled(Array.from({ length: n }, async () => await this.session({ maxTokens: this.maxPositions })))
    const sessions = opened.flatMap(o => o.status === 'fulfilled' ? [o.value] : [])
    try {
      const failed = opened.find(o => o.status === 'rejected')
      if (failed !== undefined) throw failed.reason
      const streams = sharedPromptGenerations(sessions, ids, i => ({ ...opts, signal, ...(opts.seed !== undefined ? { seed: opts.seed + i } : {}) }))
      return await Promise.all(streams.map(async stream => {
        try {
          return await drainGeneration(stream)
        } catch (err) {
          stop.abort(err)
          throw err
        }
      }))
    } finally {
      await Promise.all(sessions.map(async s => { await s.close() }))
    }
  }

  /**
   * How likely the model finds a text: the log-probability of each of its tokens given those
   * before (an entry for every token but the first), in one pass, generating nothing.
   * A string is encoded as `encode` does (BOS first when the checkpoint asks for it).
   */
  async score (text: string | readonly number[], opts: { top?: number } = {}): Promise<{ tokens: number[], logprobs: Array<TokenLogprob | undefined> }> {
    const tokens = typeof text === 'string' ? this.encode(text) : [...text]
    const session = await this.session({ maxTokens: tokens.length })
    try {
      return { tokens, logprobs: await session.score(tokens, opts) }
    } finally {
      await session.close()
    }
  }

  /** A conversation whose KV caches persist across calls: each turn sends only its new tokens. */
  async session (opts: { maxTokens?: number } = {}): Promise<ChatSession> {
    const maxTokens = Math.min(opts.maxTokens ?? this.maxPositions, this.maxPositions)
    return new ChatSession(this, await this.#newTarget(maxTokens), maxTokens)
  }

  /**
   * A chat with an instruction-tuned model: messages go through its chat template, and each
   * turn sends only what the caches do not hold yet. Throws for a model without a template.
   */
  async conversation (opts: ConversationOptions & { maxTokens?: number } = {}): Promise<Conversation> {
    if (this.chatTemplate === undefined) throw new Error('This model has no chat template (tokenizer_config.json has no chat_template, and there is no chat_template.jinja): use generate() or session() for plain text')
    return new Conversation(await this.session(opts), this.chatTemplate, this.tokenizer, opts)
  }

  async release (): Promise<void> {
    await this.#release()
  }
}

/**
 * A sequence kept alive between calls (multi-turn chat): the servers keep its caches,
 * so a new turn sends only the new tokens, starting where the last turn ended.
 */
export class ChatSession {
  readonly target: TargetModel
  /** Positions the session holds: a turn ends where they end. */
  readonly maxTokens: number
  readonly #model: LanguageModel
  /** Tokens in the caches, plus the last generated token, which is not yet (it is fed next turn). */
  #tokens: number[] = []
  /** The latest generation's sequence and its prompt-row tap: what another session adopting it may take its first logits from. */
  #lent: { tokens: readonly number[], tap: RowTap } | undefined
  /** Set by an adopt that copied a whole sequence along with its last logits: the next continueWith of it sends no run for them. */
  #primed: { tokens: readonly number[], row: Float32Array } | undefined

  constructor (model: LanguageModel, target: TargetModel, maxTokens: number) {
    this.#model = model
    this.target = target
    this.maxTokens = maxTokens
  }

  /** Every token of the conversation so far. */
  get tokens (): readonly number[] { return this.#tokens }

  /**
   * Generates after the whole sequence `ids` (the conversation so far, say, rendered again):
   * the part it shares with the tokens already in the caches is not sent again, and what
   * differs replaces them (caches are position-addressed, so that is a rollback).
   * `result.promptTokens` holds what was sent.
   */
  async * continueWith (ids: readonly number[], opts: GenerateOptions = {}): AsyncGenerator<GenerateChunk, GenerationResult> {
    if (ids.length === 0) throw new Error('Cannot generate from an empty sequence')
    if (ids.length >= this.maxTokens) throw new RangeError(`Cannot continue a sequence of ${ids.length} tokens: the session holds ${this.maxTokens} positions, and its reply needs one more`)
    // a turn ends where the session's positions end; generation_config's max_length counts the whole sequence
    const config = this.#model.generationConfig
    const wanted = opts.maxNewTokens ?? config.maxNewTokens ?? Math.max(1, config.maxLength - ids.length)
    opts = { ...opts, maxNewTokens: Math.min(wanted, this.maxTokens - ids.length) }
    // the caches hold every token but the last generated one; at least one token must be sent
    const kept = this.heldPrefix(ids)
    const cached = ids.slice(0, kept)
    const promptIds = ids.slice(kept)
    // an adopted sequence's last logits came with it: its last token's run is answered from them
    const primed = this.#primed
    this.#primed = undefined
    const target = primed !== undefined && kept === ids.length - 1 && sameIds(primed.tokens, ids) ? new PrimedTarget(this.target, kept, primed.row) : this.target
    const tap = new RowTap(target, ids.length - 1)
    this.#lent = { tokens: [...ids], tap }
    const result = yield * generateText(tap, this.#model.tokenizer, this.#model.generationConfig, promptIds, opts, { cachedTokens: cached, speculationMemory: this.#model.speculationMemory })
    this.#tokens = [...ids, ...result.tokens]
    result.promptTokens = promptIds
    return result
  }

  /**
   * The log-probability of each token of `ids` given those before (none for the first), with
   * `top` likeliest alternatives (default 0): `ids` go in one run from position 0, so the
   * caches then hold them, and a `continueWith(ids)` after it sends only the last token again.
   */
  async score (ids: readonly number[], opts: { top?: number } = {}): Promise<Array<TokenLogprob | undefined>> {
    const { top } = newLogprobLog(opts.top ?? 0) // validates top
    if (ids.length === 0) throw new Error('Cannot score an empty sequence')
    if (ids.length > this.maxTokens) throw new RangeError(`Cannot score ${ids.length} tokens: the session holds ${this.maxTokens} positions`)
    // the caches now hold something else than #tokens until the run is done: forget them first
    this.#tokens = []
    this.#lent = undefined
    const rows = await forwardOnce(this.target, ids, 0)
    this.#tokens = [...ids]
    return ids.map((id, i) => i === 0 ? undefined : tokenLogprob(rows[i - 1] as Float32Array, id, top))
  }

  /**
   * Fills the caches with all of `ids` but the last token, sending only what they do not hold
   * yet and computing no logits, so that `continueWith(ids)` then sends one token, and other
   * sessions can `adopt` the prefix from this one.
   */
  async prefill (ids: readonly number[]): Promise<void> {
    if (ids.length === 0) throw new Error('Cannot prefill an empty sequence')
    if (ids.length >= this.maxTokens) throw new RangeError(`Cannot prefill a sequence of ${ids.length} tokens: the session holds ${this.maxTokens} positions, and its reply needs one more`)
    const kept = this.heldPrefix(ids)
    this.#lent = undefined
    if (kept < ids.length - 1) {
      this.#tokens = [] // the caches hold something else until the run is back
      const sent = ids.slice(kept, -1)
      await this.target.submit(sent, kept, undefined, sent.length).logits
    }
    this.#tokens = [...ids]
  }

  /**
   * Makes this session hold what `source` (a session of the same model) holds, copying the
   * caches where they are (TargetModel.adoptPrefix) instead of computing them again: the
   * choices of one prompt, or a conversation forked to try another reply. `tokens` are what
   * the source's caches hold, all but the last at least (default: its tokens); pass the prompt
   * of a generation the source is running: its runs only ever start at the prompt's last token,
   * so the positions before it stay as they are. Where they cannot be copied the tokens are
   * sent as a prefill; returns whether they were copied (or already held).
   */
  async adopt (source: ChatSession, tokens: readonly number[] = source.tokens): Promise<boolean> {
    if (tokens.length >= this.maxTokens) throw new RangeError(`Cannot adopt a sequence of ${tokens.length} tokens: the session holds ${this.maxTokens} positions, and its reply needs one more`)
    this.#primed = undefined
    this.#lent = undefined
    // a generation of exactly these tokens whose prompt run is back holds them all, and its
    // logits after the last: copy every position and take the logits too (no run for them)
    const lent = source.#lent
    const row = lent !== undefined && sameIds(lent.tokens, tokens) ? lent.tap.row : undefined
    const length = row !== undefined ? tokens.length : tokens.length - 1 // what the source's caches surely hold
    if (length < 1 || (row === undefined && this.heldPrefix(tokens) >= length)) {
      this.#tokens = [...tokens]
      return true
    }
    this.#tokens = [] // the caches hold something else until the copy is done
    if (await this.target.adoptPrefix?.(source.target, length) === true) {
      this.#tokens = [...tokens]
      if (row !== undefined) this.#primed = { tokens: [...tokens], row: row.slice() }
      return true
    }
    await this.prefill(tokens)
    return false
  }

  /** A new session of the same model holding this one's tokens (adopted, or sent on its first turn). */
  async fork (opts: { maxTokens?: number } = {}): Promise<ChatSession> {
    const copy = await this.#model.session({ maxTokens: opts.maxTokens ?? this.maxTokens })
    try {
      await copy.adopt(this)
    } catch (err) {
      await copy.close()
      throw err
    }
    return copy
  }

  /** How many leading tokens of `ids` the caches hold already (at most all but the last of each). */
  heldPrefix (ids: readonly number[]): number {
    let kept = 0
    const limit = Math.min(this.#tokens.length - 1, ids.length - 1)
    while (kept < limit && this.#tokens[kept] === ids[kept]) kept++
    return kept
  }

  /** Continues the sequence with `prompt` (its text encoded with BOS only on the first turn). */
  async * generate (prompt: string | readonly number[], opts: GenerateOptions = {}): AsyncGenerator<GenerateChunk, GenerationResult> {
    const first = this.#tokens.length === 0
    const ids = typeof prompt === 'string'
      ? this.#model.tokenizer.encode(prompt, { addSpecialTokens: first })
      : [...prompt]
    if (ids.length === 0 && first) throw new Error('Cannot generate from an empty prompt: it has no tokens')
    // everything before is in the caches, but for the last generated token, which leads this turn
    const sent = [...this.#tokens, ...ids]
    const result = yield * this.continueWith(sent, opts)
    // what was sent may start with the last reply's final token: keep the entries of `ids`
    if (result.promptLogprobs !== undefined) result.promptLogprobs = result.promptLogprobs.slice(result.promptTokens.length - ids.length)
    result.promptTokens = ids
    return result
  }

  async close (): Promise<void> {
    await this.target.close()
  }
}

/**
 * The block hashes servers must match: the manifest's for a folder of client parts, else the
 * checkpoint's own when it holds every block and they are small enough to hash at each start
 * (or `verify` says so); none when `verify` is false.
 */
function expectedBlockHashes (ckpt: Checkpoint, manifest: ClientManifest | undefined, verify: boolean | undefined): string[] | undefined {
  if (verify === false) return undefined
  if (manifest !== undefined) return manifest.blockHashes
  const L = ckpt.config.numLayers
  if (!(verify ?? (hasAllBlocks(ckpt) && ckpt.blockByteSize(0) * L <= VERIFY_BYTES_BY_DEFAULT))) return undefined
  return Array.from({ length: L }, (_, i) => ckpt.blockWeightsHash(i))
}

/** Whether the folder holds the blocks too (not only the client parts), so their hashes can be checked. */
function hasAllBlocks (ckpt: Checkpoint): boolean {
  return Array.from({ length: ckpt.config.numLayers }, (_, i) => ckpt.hasBlock(i)).every(Boolean)
}

/** Whether two token sequences are the same. */
function sameIds (a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((id, i) => id === b[i])
}
