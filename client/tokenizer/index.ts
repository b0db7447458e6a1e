export { Tokenizer, type EncodeOptions, type DecodeOptions } from './tokenizer.js'
export { IncrementalDecoder, type IncrementalDecoderOptions } from './incremental-decoder.js'
export type { AddedToken } from './added-tokens.js'
export { TokenPieces, type TokenPiece } from './token-piece.js'
