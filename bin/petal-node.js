#!/usr/bin/env node
// Launcher for the petal-node CLI (TypeScript sources, run through tsx).
// js-libp2p 3 needs Node >= 22; `npm ci` installs one as the `node` dependency, so an
// older system Node re-runs this file with that one.
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const major = Number(process.versions.node.split('.')[0])

if (major < 22) {
  const local = join(root, 'node_modules', '.bin', 'node')
  if (!existsSync(local)) {
    console.error(`petal-node needs Node >= 22 (this is ${process.version}); run \`npm ci\` in ${root} to install it`)
    process.exit(1)
  }
  // PETAL_EXIT_WITH_PARENT: the child stops when this launcher dies, even by SIGKILL (cli/exit-with-parent.ts)
  const child = spawn(local, [fileURLToPath(import.meta.url), ...process.argv.slice(2)], { stdio: 'inherit', env: { ...process.env, PETAL_EXIT_WITH_PARENT: '1' } })
  for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => child.kill(sig))
  child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)))
} else {
  const { register } = await import('tsx/esm/api')
  register()
  await import('../cli/main.ts')
}
