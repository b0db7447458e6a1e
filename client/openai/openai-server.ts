/**
 * An OpenAI-compatible HTTP API over a `LanguageModel` (local or through a swarm):
 * `GET /v1/models`, `POST /v1/completions`, `POST /v1/chat/completions` (streamed as
 * server-sent events with `stream: true`), and `GET /health`. Any OpenAI client library or
 * chat UI can then use the swarm. Requests are stateless, as OpenAI's are; sessions are pooled
 * so that a conversation's next turn sends only its new tokens (session-pool.ts).
 */
import { randomBytes, timingSafeEqual } from 'node:crypto'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Logger } from 'pino'
import { PetalError } from '../../protocol/errors.js'
import { NoRouteError } from '../routing/route-planner.js'
import { ConnectionLostError } from '../swarm/span-session.js'
import type { ChatSession, LanguageModel } from '../language-model.js'
import type { GenerateOptions, GenerationResult } from '../text-generation.js'
import { TokenPieces } from '../tokenizer/index.js'
import { ApiError, invalidField } from './api-error.js'
import { ApiMetrics, PROMETHEUS_CONTENT_TYPE } from './api-metrics.js'
import { MIN_SHARED_TOKENS, respond, sendJson } from './completion-request.js'
import type { Endpoint, ResponseHead } from './completion-responses.js'
import { parseChatBody, parseCompletionBody, type ParsedRequest } from './request-body.js'
import { SessionPool } from './session-pool.js'

export interface OpenAiServerInit {
  model: LanguageModel
  /** The id clients name in `model` (requests naming another get 404). */
  modelId: string
  /** Options every generation starts from (a drafter, speculation, ...); a request's fields override them. */
  defaults?: GenerateOptions
  /** Positions each session holds (default: the model's context). */
  sessionTokens?: number
  /** Sessions at once (default 4). */
  maxSessions?: number
  /** Requests waiting for a session before 429 (default 32). */
  maxWaiting?: number
  /** Idle sessions close after this long, ms (default 5 minutes). */
  idleMs?: number
  /** When set, requests need `Authorization: Bearer <apiKey>`. */
  apiKey?: string
  /** Largest request body, bytes (default 4 MiB). */
  maxBodyBytes?: number
  /**
   * Let web pages from this origin call the API (CORS), e.g. "https://chat.example.org", or
   * "*" for any. Default: none (browsers refuse cross-origin calls; other clients do not care).
   */
  corsOrigin?: string
  /**
   * Sessions copy what they share with another (ChatSession.adopt) instead of computing it: the
   * `n` choices of a request compute the prompt once, and a new conversation's session copies a
   * system prompt from an idle one (default true); false: each computes its own (benchmarks).
   */
  sharePrompt?: boolean
  logger?: Logger
}

export class OpenAiServer {
  readonly #init: OpenAiServerInit
  readonly #pool: SessionPool<ChatSession>
  readonly #http: Server
  readonly #sessionTokens: number
  readonly #pieces: TokenPieces
  readonly #metrics = new ApiMetrics()

  private constructor (init: OpenAiServerInit) {
    this.#init = init
    this.#pieces = new TokenPieces(init.model.tokenizer)
    this.#sessionTokens = Math.min(init.sessionTokens ?? init.model.maxPositions, init.model.maxPositions)
    this.#pool = new SessionPool({
      open: async () => await init.model.session({ maxTokens: this.#sessionTokens }),
      maxSessions: init.maxSessions ?? 4,
      maxWaiting: init.maxWaiting ?? 32,
      idleMs: init.idleMs ?? 5 * 60_000
    })
    this.#http = createServer((req, res) => { void this.#handle(req, res) })
  }

  /** Starts listening on `host:port` (port 0: any free one). */
  static async listen (init: OpenAiServerInit, opts: { host?: string, port?: number } = {}): Promise<OpenAiServer> {
    const server = new OpenAiServer(init)
    await new Promise<void>((resolve, reject) => {
      server.#http.once('error', reject)
      server.#http.listen(opts.port ?? 8000, opts.host ?? '127.0.0.1', () => { server.#http.off('error', reject); resolve() })
    })
    return server
  }

  /** The API's base URL, e.g. http://127.0.0.1:8000/v1 */
  get url (): string {
    const { address, port, family } = this.#http.address() as AddressInfo
    return `http://${family === 'IPv6' ? `[${address}]` : address}:${port}/v1`
  }

  /** Sessions lent to requests and idle ones. */
  get sessions (): { busy: number, idle: number } {
    return { busy: this.#pool.busyCount, idle: this.#pool.idleCount }
  }

  async close (): Promise<void> {
    this.#http.closeAllConnections()
    await new Promise<void>(resolve => { this.#http.close(() => { resolve() }) })
    await this.#pool.close()
  }

  async #handle (req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      if (this.#cors(req, res)) return
      this.#authorize(req)
      const path = (req.url ?? '/').split('?')[0] as string
      if (path === '/health' && req.method === 'GET') return sendJson(res, 200, { status: 'ok', model: this.#init.modelId, sessions: this.sessions })
      if (path === '/metrics' && req.method === 'GET') {
        res.writeHead(200, { 'content-type': PROMETHEUS_CONTENT_TYPE }).end(this.#metrics.render({ ...this.sessions, waiting: this.#pool.waitingCount }))
        return
      }
      if (path === '/v1/models' && req.method === 'GET') return sendJson(res, 200, { object: 'list', data: [this.#modelCard()] })
      if (path.startsWith('/v1/models/') && req.method === 'GET') {
        this.#checkModel(decodeURIComponent(path.slice('/v1/models/'.length)))
        return sendJson(res, 200, this.#modelCard())
      }
      const endpoint: Endpoint | undefined = path === '/v1/completions' ? 'completion' : path === '/v1/chat/completions' ? 'chat' : undefined
      if (endpoint === undefined) throw new ApiError(404, `No route ${req.method ?? ''} ${path}: this server has GET /v1/models, POST /v1/completions, POST /v1/chat/completions, GET /health and GET /metrics`, { code: 'not_found' })
      if (req.method !== 'POST') throw new ApiError(405, `${path} takes POST`, { code: 'method_not_allowed' })
      try {
        await this.#complete(endpoint, await readJson(req, this.#init.maxBodyBytes ?? 4 * 2 ** 20), req, res)
        this.#metrics.request(endpoint, 200)
      } catch (err) {
        this.#metrics.request(endpoint, asApiError(err).status)
        throw err
      }
    } catch (err) {
      this.#fail(res, err)
    }
  }

  async #complete (endpoint: Endpoint, body: unknown, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const request = endpoint === 'chat' ? parseChatBody(body) : parseCompletionBody(body)
    if (request.model !== undefined) this.#checkModel(request.model)
    const vocab = this.#init.model.tokenizer.vocabSize
    const outside = Object.keys(request.options.logitBias ?? {}).find(id => Number(id) >= vocab)
    if (outside !== undefined) throw invalidField('logit_bias', `Token id ${outside} is out of the vocabulary (${vocab} tokens)`)
    const ids = 'messages' in request ? this.#chatIds(request.messages) : this.#promptIds(request.prompt)
    this.#checkLength(ids.length, request)
    // the client going away (closing the connection) aborts its generation
    const aborter = new AbortController()
    res.on('close', () => { if (!res.writableFinished) aborter.abort(new ApiError(499, 'The client closed the connection', { code: 'client_closed' })) })
    const maxSessions = this.#init.maxSessions ?? 4
    if (request.n > maxSessions) throw invalidField('n', `n must be at most ${maxSessions} here: each choice holds one of the server's ${maxSessions} sessions (--max-sessions)`)
    const sessions = await this.#pool.acquireMany(ids, request.n, aborter.signal)
    let healthy = false
    try {
      await this.#copySharedPrefix(sessions[0] as ChatSession, ids)
      const head: ResponseHead = { id: `${endpoint === 'chat' ? 'chatcmpl' : 'cmpl'}-${randomBytes(12).toString('hex')}`, created: Math.floor(Date.now() / 1000), model: this.#init.modelId, endpoint }
      const results = await respond({ res, head, request, ids, sessions, tokenizer: this.#init.model.tokenizer, pieces: this.#pieces, defaults: this.#init.defaults, signal: aborter.signal, ...(this.#init.sharePrompt === false ? { sharePrompt: false } : {}) })
      healthy = true
      this.#metrics.results(ids.length, results)
      const first = results[0] as GenerationResult
      this.#init.logger?.info({ endpoint, choices: results.length, promptTokens: ids.length, sent: first.promptTokens.length, tokens: results.map(r => r.tokens.length), route: first.stats.target.route }, 'completed')
    } finally {
      // a session whose generation failed or was aborted may hold runs in flight: close it
      for (const session of sessions) this.#pool.release(session, healthy)
    }
  }

  /**
   * When an idle session holds a longer prefix of `ids` than `session` does, by at least
   * MIN_SHARED_TOKENS (a system prompt that other conversations began with), `session` copies
   * it from there (ChatSession.adopt), so its first run sends only the rest.
   */
  async #copySharedPrefix (session: ChatSession, ids: readonly number[]): Promise<void> {
    if (this.#init.sharePrompt === false) return
    const held = session.heldPrefix(ids)
    await this.#pool.withIdlePrefix(ids, held + MIN_SHARED_TOKENS, async (source, shared) => {
      const length = Math.min(shared, source.tokens.length - 1, ids.length - 1) // what its caches surely hold of ids
      if (length - held >= MIN_SHARED_TOKENS) await session.adopt(source, ids.slice(0, length + 1))
    })
  }

  #chatIds (messages: Array<{ role: string, content: string }>): number[] {
    const template = this.#init.model.chatTemplate
    if (template === undefined) throw new ApiError(400, `The model ${this.#init.modelId} has no chat template (a base model): use /v1/completions`, { code: 'no_chat_template' })
    let text: string
    try {
      text = template.render(messages)
    } catch (err) {
      throw invalidField('messages', (err as Error).message)
    }
    // the template writes BOS and the other special tokens itself
    return this.#init.model.tokenizer.encode(text, { addSpecialTokens: false })
  }

  #promptIds (prompt: string | number[]): number[] {
    if (typeof prompt === 'string') return this.#init.model.encode(prompt)
    const vocab = this.#init.model.tokenizer.vocabSize
    const bad = prompt.find(id => id >= vocab)
    if (bad !== undefined) throw invalidField('prompt', `Token id ${bad} is out of the vocabulary (${vocab} tokens)`)
    return prompt
  }

  /** OpenAI's context_length_exceeded: the prompt, and an explicit max_tokens, must fit a session. */
  #checkLength (promptLength: number, request: ParsedRequest): void {
    const limit = this.#sessionTokens
    const asked = request.options.maxNewTokens
    if (promptLength + (asked ?? 1) > limit) {
      throw new ApiError(400, `This model's context holds ${limit} tokens. However, you requested ${promptLength + (asked ?? 1)} tokens (${promptLength} in the prompt, ${asked ?? 1} for the completion)`, { param: 'messages', code: 'context_length_exceeded' })
    }
  }

  #checkModel (model: string): void {
    if (model !== this.#init.modelId) throw new ApiError(404, `The model '${model}' does not exist here: this server serves '${this.#init.modelId}'`, { param: 'model', code: 'model_not_found' })
  }

  #modelCard (): Record<string, unknown> {
    return { id: this.#init.modelId, object: 'model', created: 0, owned_by: 'petal', context_length: this.#sessionTokens }
  }

  /**
   * CORS headers on every response when an origin is allowed; answers a browser's preflight
   * (OPTIONS, which carries no API key) and returns true for it.
   */
  #cors (req: IncomingMessage, res: ServerResponse): boolean {
    const allowed = this.#init.corsOrigin
    if (allowed === undefined) return false
    res.setHeader('access-control-allow-origin', allowed)
    if (allowed !== '*') res.setHeader('vary', 'Origin')
    if (req.method !== 'OPTIONS') return false
    res.writeHead(204, {
      'access-control-allow-methods': 'GET, POST, OPTIONS',
      'access-control-allow-headers': 'authorization, content-type',
      'access-control-max-age': '600'
    })
    res.end()
    return true
  }

  #authorize (req: IncomingMessage): void {
    const key = this.#init.apiKey
    if (key === undefined) return
    const given = Buffer.from(/^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '')
    const wanted = Buffer.from(key)
    if (given.length !== wanted.length || !timingSafeEqual(given, wanted)) throw new ApiError(401, 'Missing or wrong API key: send Authorization: Bearer <key>', { type: 'authentication_error', code: 'invalid_api_key' })
  }

  #fail (res: ServerResponse, err: unknown): void {
    const apiError = asApiError(err)
    if (apiError.status >= 500) this.#init.logger?.warn({ err }, 'request failed')
    if (res.writableEnded || res.destroyed) return
    if (res.headersSent) {
      // mid-stream: the error travels as one more event, then the stream ends
      res.end(`data: ${JSON.stringify(apiError.toJSON())}\n\n`)
    } else {
      sendJson(res, apiError.status, apiError.toJSON())
    }
  }
}

/**
 * What a failure means to an HTTP client: the swarm not covering the model is 503 (try again
 * when servers join), a server failing beyond failover 502, anything else 500.
 */
function asApiError (err: unknown): ApiError {
  if (err instanceof ApiError) return err
  const message = (err as Error)?.message ?? String(err)
  if (err instanceof NoRouteError) return new ApiError(503, message, { code: 'swarm_unavailable', cause: err })
  if (err instanceof PetalError || err instanceof ConnectionLostError) return new ApiError(502, message, { code: 'swarm_error', cause: err })
  return new ApiError(500, message, { cause: err })
}

/** The request body as JSON; 413 past `limit` bytes, 400 when it does not parse. */
async function readJson (req: IncomingMessage, limit: number): Promise<unknown> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req) {
    size += (chunk as Buffer).length
    if (size > limit) throw new ApiError(413, `The request body is larger than ${limit} bytes`, { code: 'body_too_large' })
    chunks.push(chunk as Buffer)
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'))
  } catch (err) {
    throw new ApiError(400, `The request body is not JSON: ${(err as Error).message}`, { code: 'invalid_json', cause: err })
  }
}
