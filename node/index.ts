/** Public surface of the server side: the server, its identity, and its pure decisions. */
export { PetalServer } from './server.js'
export type { PetalServerInit } from './server-options.js'
export { IdentityError, loadOrCreateIdentity } from './identity.js'
export { measureThroughput } from './throughput.js'
export type { MeasureThroughputOptions } from './throughput.js'
export { blockThroughputs, chooseBestSpan } from './block-selection.js'
export type { ServedSpan } from './block-selection.js'
