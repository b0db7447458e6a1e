/**
 * Prometheus's text exposition format (version 0.0.4), what `serve --metrics` and the API's
 * GET /metrics answer: per metric a HELP and a TYPE line, then one sample per label set.
 */

/** The content type of the format. */
export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8'

export interface Metric {
  name: string
  type: 'gauge' | 'counter'
  help: string
  /** One sample per label set (labels already rendered, e.g. `{state="online"}`, or ''). */
  samples: Array<[labels: string, value: number]>
}

/** A metric of one unlabelled sample. */
export function single (type: Metric['type'], name: string, help: string, value: number): Metric {
  return { name, type, help, samples: [['', value]] }
}

/** Metrics -> the text format. */
export function renderMetrics (metrics: readonly Metric[]): string {
  return metrics.map(({ name, type, help, samples }) =>
    [`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, ...samples.map(([l, v]) => `${name}${l} ${formatValue(v)}`)].join('\n')
  ).join('\n') + '\n'
}

/** {a="x",b="y"}, with \, " and newlines escaped as the format asks. */
export function renderLabels (labels: Record<string, string>): string {
  const escape = (v: string): string => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')
  return `{${Object.entries(labels).map(([k, v]) => `${k}="${escape(v)}"`).join(',')}}`
}

function formatValue (v: number): string {
  if (Number.isNaN(v)) return 'NaN'
  if (!Number.isFinite(v)) return v > 0 ? '+Inf' : '-Inf'
  return String(v)
}
