/**
 * An error answered in OpenAI's shape: `{ error: { message, type, param, code } }` with an
 * HTTP status, so that OpenAI client libraries show the message as it is.
 */
export class ApiError extends Error {
  override readonly name = 'ApiError'
  readonly status: number
  /** OpenAI's error type: invalid_request_error, authentication_error, server_error, ... */
  readonly type: string
  /** The request field at fault, if one is. */
  readonly param: string | null
  readonly code: string | null

  constructor (status: number, message: string, opts: { type?: string, param?: string, code?: string, cause?: unknown } = {}) {
    super(message, opts.cause !== undefined ? { cause: opts.cause } : undefined)
    this.status = status
    this.type = opts.type ?? (status >= 500 ? 'server_error' : 'invalid_request_error')
    this.param = opts.param ?? null
    this.code = opts.code ?? null
  }

  /** The response body. */
  toJSON (): { error: { message: string, type: string, param: string | null, code: string | null } } {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } }
  }
}

/** A 400 about one field of the request. */
export function invalidField (param: string, message: string, code = 'invalid_value'): ApiError {
  return new ApiError(400, message, { param, code })
}
