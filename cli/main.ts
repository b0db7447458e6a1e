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

const COMMANDS = ['demo', 'generate', 'chat', 'api', 'forward', 'export-client', 'serve', 'status']
// a usage error is one line that names the help to read: the subcommand's, else the program's
// (commander shares one output configuration between a program and its subcommands)
const invoked = process.argv.slice(2).find(arg => !arg.startsWith('-'))
const hint = invoked !== undefined && COMMANDS.includes(invoked) ? `(see petal-node ${invoked} --help)` : '(run with --help for usage)'
const oneLine = (text: string): string => text.trim().replace(/\s*\n\s*/g, ' ')

const program = new Command('petal-node')
  .description('Petal: run large language models collaboratively across volunteers\' machines')
  .option('--verbose', 'log details and print stack traces on errors')
  .showHelpAfterError(false)
  .configureOutput({ outputError: (text, write) => { write(`petal-node: ${oneLine(text.replace(/^error: /, ''))} ${hint}\n`) } })
  .exitOverride(err => { process.exit(err.exitCode) })

demoCommand(program)
generateCommand(program)
chatCommand(program)
apiCommand(program)
forwardCommand(program)
exportClientCommand(program)
serveCommand(program)
statusCommand(program)
const unnamed = program.commands.map(c => c.name()).filter(name => !COMMANDS.includes(name))
if (unnamed.length > 0) throw new Error(`COMMANDS lacks ${unnamed.join(', ')}`)

try {
  await program.parseAsync(process.argv)
} catch (err) {
  exitWithError(err, verbose)
}
