/** Public surface of the Petal wire protocol: ids, messages, codecs, framing, errors, DHT keys. */
export { DHT_PROTOCOL, PETAL_VERSION, PROTOCOL_INFERENCE, PROTOCOL_INFO, PROTOCOL_PUSH, PROTOCOL_VERSION } from './ids.js'
export {
  BadMessageError, BadShapeError, CacheLimitError, CancelledError, DrainingError, ERROR_CODES, errorFromFrame, GapError,
  InternalError, isErrorCode, isRetryable, PetalError, SessionLimitError, TimeoutError, toErrorFrame, TooLargeError,
  UnknownSessionError, WrongSpanError
} from './errors.js'
export type { ErrorCode, ErrorFrame } from './errors.js'
export { DEFAULT_LIMITS, MAX_ID_LENGTH, MAX_LIST_LENGTH, MAX_TEXT_LENGTH, resolveLimits } from './limits.js'
export type { Limits } from './limits.js'
export { decodeFloat16, encodeFloat16, f16BitsToF32Bits, f32BitsToF16Bits, roundToFloat16 } from './float16.js'
export { decodeTensor, encodeTensor, MAX_TENSOR_RANK, numElements, parseWireTensor, WIRE_DTYPES, wireByteLength } from './tensor-codec.js'
export type { Tensor, WireDtype, WireTensor } from './tensor-codec.js'
export { assertHiddenSize, parseHidden } from './hidden.js'
export type { HiddenTensor } from './hidden.js'
export { parseAdopt, parseCancel, parseClientMessage, parseClose, parseOpen, parseRun } from './inference-requests.js'
export type { AdoptMessage, CancelMessage, ClientMessage, CloseMessage, OpenMessage, RunMessage } from './inference-requests.js'
export { parseAdopted, parseErrorFrame, parseNotice, parseOpened, parseResult, parseServerMessage } from './inference-replies.js'
export type { AdoptedMessage, ErrorMessage, NoticeMessage, OpenedMessage, ResultMessage, ServerMessage } from './inference-replies.js'
export { MAX_PUSH_HOPS, parsePush, parsePushHop } from './push-message.js'
export type { PushHop, PushMessage } from './push-message.js'
export { parseInfoRequest, parseServerInfo, parseServerMetrics, parseThroughput, SERVER_STATES } from './server-info.js'
export type { InfoRequest, ServerInfo, ServerMetrics, ServerState, Throughput } from './server-info.js'
export { decodeFrameBody, encodeFrame, FrameDecoder, varintLength, writeVarint } from './frames.js'
export type { Chunk } from './frames.js'
export { FramedStream } from './framed-stream.js'
export type { ByteStream, FramedStreamInit } from './framed-stream.js'
export { blockCid, blockKey } from './dht-keys.js'
