/**
 * A server's counters for Prometheus (`serve --metrics HOST:PORT`): GET /metrics answers in
 * the text exposition format, so a volunteer can chart what their machine does for the swarm
 * (Grafana, or `curl`). Everything comes from the same ServerInfo that /petal/1/info answers.
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { SERVER_STATES, type ServerInfo } from '../protocol/index.js'
import { PROMETHEUS_CONTENT_TYPE, renderLabels, renderMetrics, single, type Metric } from '../protocol/prometheus-text.js'

export interface MetricsEndpointInit {
  /** The server's current self-description (PetalServer.info). */
  info: () => ServerInfo
  host?: string
  /** 0: any free port. */
  port: number
}

export class MetricsEndpoint {
  readonly #http: Server

  private constructor (http: Server) {
    this.#http = http
  }

  static async listen (init: MetricsEndpointInit): Promise<MetricsEndpoint> {
    const http = createServer((req, res) => {
      if (req.method !== 'GET' || (req.url ?? '/').split('?')[0] !== '/metrics') {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('This endpoint serves GET /metrics\n')
        return
      }
      let body: string
      try {
        body = formatMetrics(init.info(), process.memoryUsage().rss)
      } catch (err) {
        res.writeHead(500, { 'content-type': 'text/plain' }).end(`Cannot read the server's metrics: ${(err as Error).message}\n`)
        return
      }
      res.writeHead(200, { 'content-type': PROMETHEUS_CONTENT_TYPE }).end(body)
    })
    await new Promise<void>((resolve, reject) => {
      http.once('error', reject)
      http.listen(init.port, init.host ?? '127.0.0.1', () => { http.off('error', reject); resolve() })
    })
    return new MetricsEndpoint(http)
  }

  /** e.g. http://127.0.0.1:9400/metrics */
  get url (): string {
    const { address, port, family } = this.#http.address() as AddressInfo
    return `http://${family === 'IPv6' ? `[${address}]` : address}:${port}/metrics`
  }

  async close (): Promise<void> {
    this.#http.closeAllConnections()
    await new Promise<void>(resolve => { this.#http.close(() => { resolve() }) })
  }
}

/** ServerInfo -> Prometheus text exposition format (one HELP, TYPE and samples per metric). */
export function formatMetrics (info: ServerInfo, residentBytes: number): string {
  const m = info.metrics
  const labels = renderLabels({
    model: info.modelId,
    blocks: `${info.start}:${info.end}`,
    device: info.device,
    quantization: info.quantization ?? 'none',
    version: info.version,
    peer_id: info.peerId
  })
  const gauge = (name: string, help: string, value: number): Metric => single('gauge', name, help, value)
  const counter = (name: string, help: string, value: number): Metric => single('counter', name, help, value)
  const metrics: Metric[] = [
    { name: 'petal_server_info', type: 'gauge', help: 'What this server serves (always 1; the labels carry it).', samples: [[labels, 1]] },
    { name: 'petal_server_state', type: 'gauge', help: 'The server\'s state: 1 for the current one.', samples: SERVER_STATES.map(s => [renderLabels({ state: s }), s === info.state ? 1 : 0]) },
    gauge('petal_blocks_served', 'Blocks in the served span.', info.end - info.start),
    gauge('petal_decode_tokens_per_second_per_block', 'Measured decode speed of one block (0: not measured yet).', info.throughput.decodeTokensPerSec),
    gauge('petal_prefill_tokens_per_second_per_block', 'Measured prefill speed of one block (0: not measured yet).', info.throughput.prefillTokensPerSec),
    gauge('petal_sessions_open', 'Client sessions open now.', info.openSessions),
    gauge('petal_sessions_max', 'Most sessions at once (--max-sessions).', info.maxSessions),
    gauge('petal_cache_free_tokens', 'Cache positions a new session could still get.', info.freeCacheTokens),
    gauge('petal_runs_queued', 'Runs waiting to start now.', m?.queuedRuns ?? 0),
    counter('petal_runs_computed_total', 'Runs computed to the end.', m?.runsComputed ?? 0),
    counter('petal_runs_batched_total', 'Runs computed in one pass with other sessions\' runs (batched decode).', m?.runsBatched ?? 0),
    counter('petal_runs_dropped_before_start_total', 'Runs cancelled while queued: never computed (early cancellation).', m?.runsDroppedBeforeStart ?? 0),
    counter('petal_runs_aborted_mid_run_total', 'Runs cancelled while computing.', m?.runsAbortedMidRun ?? 0),
    counter('petal_runs_dropped_late_total', 'Runs that arrived after their cancel.', m?.runsDroppedLate ?? 0),
    counter('petal_prefixes_adopted_total', 'Sessions that copied another session\'s prefix instead of computing it (n choices, forks).', m?.prefixesAdopted ?? 0),
    counter('petal_runs_refused_total', 'Runs refused: their session had the most waiting runs allowed.', m?.runsRefused ?? 0),
    gauge('process_resident_memory_bytes', 'Resident memory of the server process.', residentBytes)
  ]
  return renderMetrics(metrics)
}
