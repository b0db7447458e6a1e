/** A checkpoint folder that Petal cannot load: the message names the file and what is wrong. */
export class CheckpointError extends Error {
  static readonly code = 'ERR_CHECKPOINT'
  readonly code = CheckpointError.code
  override readonly name = 'CheckpointError'
}

/** A tensor whose shape does not fit what the caller or the graph expects. */
export class ShapeError extends Error {
  static readonly code = 'ERR_SHAPE'
  readonly code = ShapeError.code
  override readonly name = 'ShapeError'
}
