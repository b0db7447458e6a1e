/** Environment flag: set to "1" for a process that must not outlive the one that started it. */
const EXIT_WITH_PARENT_ENV = 'PETAL_EXIT_WITH_PARENT'

/**
 * With PETAL_EXIT_WITH_PARENT=1 (set by bin/petal-node.js for the Node 22 process it starts,
 * and by LocalSwarm for its servers), a process whose parent dies (SIGKILL, a crash) sends
 * itself SIGTERM, which a server answers by draining and exiting, instead of serving on as an
 * orphan nobody will stop. The parent's death shows as a new parent pid (re-parenting).
 */
export function exitWithParent (intervalMs = 500): void {
  if (process.env[EXIT_WITH_PARENT_ENV] !== '1') return
  const parent = process.ppid
  const timer = setInterval(() => {
    if (process.ppid === parent) return
    clearInterval(timer)
    process.kill(process.pid, 'SIGTERM')
  }, intervalMs)
  timer.unref()
}
