import { Command } from 'commander'
import { exitWithError } from './cli-error.js'
import { exitWithParent } from './exit-with-parent.js'
import { apiCommand } from './api-command.js'
import { chatCommand } from './chat-command.js'
import { demoCommand } from './demo-command.js'
import { exportClientCommand } from './export-client-command.js'
import { forwardCommand } from './forward-command.js'
import { generateCommand } from './generate-command.js'
import { serveCommand } from './serve-command.js'
import { statusCommand } from './status-command.js'

const verbose = process.argv.includes('--verbose')
exitWithParent()

const program = new Command('petal-node')
  .description('Petal: run large language models collaboratively across volunteers\' machines')
  .option('--verbose', 'log details and print stack traces on errors')
  .showHelpAfterError('(run with --help for usage)')
  .configureOutput({ outputError: (text, write) => { write(`petal-node: ${text.replace(/^error: /, '')}`) } })
  .exitOverride(err => { process.exit(err.exitCode) })

demoCommand(program)
generateCommand(program)
chatCommand(program)
apiCommand(program)
forwardCommand(program)
exportClientCommand(program)
serveCommand(program)
statusCommand(program)

try {
  await program.parseAsync(process.argv)
} catch (err) {
  exitWithError(err, verbose)
}
