import { pino, type Logger } from 'pino'

/**
 * The CLI's root logger: pino JSON on stderr; `level` "silent" keeps quiet commands quiet.
 *
 * It writes to process.stderr, not pino.destination(2): when stderr's reader goes away (the
 * process that started a server died, `2>&1 | head`), sonic-boom's exit flush retries a
 * write that fails with EPIPE forever, so a server told to stop never exited. Log lines
 * nobody can read are dropped instead.
 */
export function createCliLogger (level: string): Logger {
  ignoreWriteErrors(process.stderr)
  return pino({ level, base: undefined }, process.stderr)
}

/** A stream whose reader is gone emits EPIPE errors: without a listener they would crash the process. */
export function ignoreWriteErrors (stream: NodeJS.WriteStream): void {
  if (stream.listenerCount('error') === 0) stream.on('error', () => {})
}
