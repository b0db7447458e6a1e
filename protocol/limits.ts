/** Limits that every validator and the frame decoder enforce at the boundary. */
export interface Limits {
  /** Largest frame body in bytes (the varint length prefix is checked before buffering). */
  maxFrameBytes: number
  /** Largest element count of one tensor. */
  maxTensorElements: number
  /** Most tokens (T) in one run or result. */
  maxTokensPerRun: number
}

/** Defaults: 64 MiB frames, 8 Mi elements per tensor, 4096 tokens per run. */
export const DEFAULT_LIMITS: Readonly<Limits> = Object.freeze({
  maxFrameBytes: 64 * 1024 * 1024,
  maxTensorElements: 8 * 1024 * 1024,
  maxTokensPerRun: 4096
})

/** Fills the unset fields of `limits` with {@link DEFAULT_LIMITS}. */
export function resolveLimits (limits?: Partial<Limits>): Limits {
  return {
    maxFrameBytes: limits?.maxFrameBytes ?? DEFAULT_LIMITS.maxFrameBytes,
    maxTensorElements: limits?.maxTensorElements ?? DEFAULT_LIMITS.maxTensorElements,
    maxTokensPerRun: limits?.maxTokensPerRun ?? DEFAULT_LIMITS.maxTokensPerRun
  }
}

/** Longest id string (model id, session id, peer id) accepted in a message. */
export const MAX_ID_LENGTH = 256

/** Longest free-text string (error message, device, address) accepted in a message. */
export const MAX_TEXT_LENGTH = 4096

/** Most entries of a list field (push hops, cancelled run ids, addresses, block hashes). */
export const MAX_LIST_LENGTH = 4096
