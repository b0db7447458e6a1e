/**
 * What `petal-node api` has served, for Prometheus (GET /metrics on the API's own address):
 * requests by endpoint and outcome, tokens in and out, time to the first token, sessions.
 */
import { PROMETHEUS_CONTENT_TYPE, renderLabels, renderMetrics, single, type Metric } from '../../protocol/prometheus-text.js'
import type { GenerationResult } from '../text-generation.js'
import type { Endpoint } from './completion-responses.js'

export { PROMETHEUS_CONTENT_TYPE }

/** The pool's state when the metrics are read. */
export interface PoolState {
  busy: number
  idle: number
  waiting: number
}

export class ApiMetrics {
  /** Completion requests by `endpoint status`. */
  readonly #requests = new Map<string, { endpoint: Endpoint, status: number, count: number }>()
  #promptTokens = 0
  #cachedPromptTokens = 0
  #completionTokens = 0
  #ttftSeconds = 0
  #ttftCount = 0

  /** A completion request ended with HTTP `status` (499: the client left). */
  request (endpoint: Endpoint, status: number): void {
    const key = `${endpoint} ${status}`
    const entry = this.#requests.get(key) ?? { endpoint, status, count: 0 }
    entry.count++
    this.#requests.set(key, entry)
  }

  /** A request's choices: `promptLength` tokens in, what the first choice's session held of them, the tokens out. */
  results (promptLength: number, results: readonly GenerationResult[]): void {
    const first = results[0]
    if (first === undefined) return
    this.#promptTokens += promptLength
    this.#cachedPromptTokens += promptLength - first.promptTokens.length
    this.#completionTokens += results.reduce((n, r) => n + r.tokens.length, 0)
    if (first.tokens.length > 0) {
      this.#ttftSeconds += first.stats.ttftMs / 1000
      this.#ttftCount++
    }
  }

  render (pool: PoolState): string {
    const metrics: Metric[] = [
      {
        name: 'petal_api_requests_total',
        type: 'counter',
        help: 'Completion requests by endpoint and HTTP status (499: the client left).',
        samples: [...this.#requests.values()].map(r => [renderLabels({ endpoint: r.endpoint, status: String(r.status) }), r.count])
      },
      single('counter', 'petal_api_prompt_tokens_total', 'Prompt tokens of completed requests (each request once, however many choices).', this.#promptTokens),
      single('counter', 'petal_api_prompt_tokens_cached_total', 'Of those, tokens the servers\' caches held already (not sent again).', this.#cachedPromptTokens),
      single('counter', 'petal_api_completion_tokens_total', 'Tokens generated, every choice.', this.#completionTokens),
      single('counter', 'petal_api_time_to_first_token_seconds_sum', 'Time to the first choice\'s first token, summed over completed requests.', this.#ttftSeconds),
      single('counter', 'petal_api_time_to_first_token_seconds_count', 'Completed requests that generated a token.', this.#ttftCount),
      { name: 'petal_api_sessions', type: 'gauge', help: 'The pool\'s sessions: lent to requests (busy) or kept for the next turn (idle).', samples: [[renderLabels({ state: 'busy' }), pool.busy], [renderLabels({ state: 'idle' }), pool.idle]] },
      single('gauge', 'petal_api_requests_waiting', 'Requests waiting for a session.', pool.waiting)
    ]
    return renderMetrics(metrics)
  }
}
