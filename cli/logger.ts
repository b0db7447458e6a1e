import { pino, type Logger } from 'pino'

/** The CLI's root logger: pino JSON on stderr; `level` "silent" keeps quiet commands quiet. */
export function createCliLogger (level: string): Logger {
  return pino({ level, base: undefined }, pino.destination(2))
}
