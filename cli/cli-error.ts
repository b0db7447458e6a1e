/** A user mistake on the command line: printed as one line, no stack trace. */
export class UsageError extends Error {
  override readonly name = 'UsageError'
}

/** Prints an error as one line on stderr (the stack and causes only with --verbose) and exits non-zero. */
export function exitWithError (err: unknown, verbose: boolean): never {
  const e = err instanceof Error ? err : new Error(String(err))
  if (verbose) {
    console.error(e.stack ?? e.message)
    let cause = e.cause
    while (cause instanceof Error) {
      console.error(`caused by: ${cause.stack ?? cause.message}`)
      cause = cause.cause
    }
  } else {
    console.error(`petal-node: ${e.message.split('\n')[0] ?? ''}`)
  }
  process.exit(1)
}
