/**
 * Where runs from clients (/petal/1/inference) and from previous servers
 * (/petal/1/push) meet: validate, queue on the session, then deliver the output to
 * the client and forward it to the next hop.
 */
import type { Logger } from 'pino'
import { assertActivations, assertHiddenSize, type HiddenTensor } from '../protocol/hidden.js'
import { PushFailedError, toErrorFrame, type PetalError } from '../protocol/errors.js'
import type { Limits } from '../protocol/limits.js'
import type { PushHop, PushMessage } from '../protocol/push-message.js'
import { decodeTensor, encodeTensor } from '../protocol/tensor-codec.js'
import type { PushForwarder } from './push-forwarder.js'
import type { RunOutcome, ServerSession, SessionManager } from './session-manager.js'

/**
 * A client's open session and the inference stream its replies go to. Results of
 * pushed runs of the session go there too.
 */
export interface SessionLink {
  readonly session: ServerSession
  /** Queues a frame to the client (ordered, after the simulated latency); never throws. */
  send: (message: unknown) => void
  /** The client takes `progress` frames (it said so when it opened the session). */
  readonly progress?: boolean
  readonly log: Logger
}

/** A run to execute, as received (client run or push). */
export interface RunRequest {
  runId: number
  /** Position of the first token. */
  start: number
  /** (1, T, C) in its wire dtype; the result goes back in the same dtype. */
  hidden: HiddenTensor
  /** The rows form a token tree (model/token-tree.ts); undefined: a chain. */
  parents: readonly number[] | undefined
  /** Servers that get the output next, in order (empty: none). */
  push: readonly PushHop[]
  /** Send the output back to the client (when not carrying). */
  replyOutput: boolean
  /**
   * Set when the route carries outputs (RunMessage.carry): the outputs of the hops before
   * this one, this run's input included when it came by push. The output then goes on with
   * the list (push) or, at the last hop, back to the client with it; no other reply.
   */
  carried?: readonly HiddenTensor[]
}

/** Options of a RunExecutor. */
export interface RunExecutorInit {
  manager: SessionManager
  forwarder: PushForwarder
  /** C of the model: every hidden tensor must be (1, T, C). */
  hiddenSize: number
  limits: Limits
  /** This server's peer id: a push to it is handed to the named local session directly. */
  selfPeerId?: string
  /** sessionId -> link, for pushes to this server's own sessions. */
  links?: ReadonlyMap<string, SessionLink>
}

/**
 * Runs a session's runs and routes their outputs. Every failure of a run reaches the
 * client as an error frame carrying its runId and code; nothing here throws.
 */
export class RunExecutor {
  readonly #init: RunExecutorInit

  constructor (init: RunExecutorInit) {
    this.#init = init
  }

  /** Validates and queues a run of `link`'s session. */
  submit (link: SessionLink, run: RunRequest): void {
    try {
      assertHiddenSize(run.hidden, this.#init.hiddenSize, 'run.hidden')
      const x = decodeTensor(run.hidden, this.#init.limits, 'run.hidden').data // (1,T,C) float32
      assertActivations(x, 'run.hidden')
      const onProgress = link.progress === true ? (rows: number) => { link.send({ type: 'progress', runId: run.runId, rows }) } : undefined
      this.#init.manager.enqueue(link.session, run.runId, run.start, x, run.parents, (err, out) => {
        if (err !== undefined) this.#fail(link, run.runId, err)
        else if (out !== undefined) this.#deliver(link, run, out)
      }, onProgress)
    } catch (err) {
      this.#fail(link, run.runId, err)
    }
  }

  #deliver (link: SessionLink, run: RunRequest, out: RunOutcome): void {
    if (link.session.closed) return
    const hidden = encodeTensor(out.hidden, run.hidden.dims, run.hidden.dtype) as HiddenTensor // (1,T,C)
    const [next, ...rest] = run.push
    const carried = run.carried
    if (next !== undefined && next.peerId === this.#init.selfPeerId) {
      // the next hop is another session on this very server (a route can use two parts of one span)
      const nextLink = this.#init.links?.get(next.sessionId)
      if (nextLink === undefined) this.#fail(link, run.runId, new PushFailedError(`Cannot pass run ${run.runId} on: session ${next.sessionId} is not open here`))
      else this.submit(nextLink, { runId: run.runId, start: run.start, hidden, parents: run.parents, push: rest, replyOutput: true, ...(carried !== undefined ? { carried: [...carried, hidden] } : {}) })
    } else if (next !== undefined) {
      // the next server is on the critical path: hand its frame over first
      const push: PushMessage = { type: 'push', sessionId: next.sessionId, runId: run.runId, start: run.start, hidden, ...(run.parents !== undefined ? { parents: [...run.parents] } : {}), push: rest, ...(carried !== undefined ? { carried: [...carried] } : {}) }
      this.#init.forwarder.forward(next.peerId, push).catch((err: unknown) => {
        link.log.warn({ err, runId: run.runId, next: next.peerId }, 'cannot forward run to the next server')
        this.#fail(link, run.runId, err instanceof PushFailedError ? err : new PushFailedError(`Cannot push run ${run.runId} to the next server ${next.peerId}`, { cause: err }))
      })
    }
    // carrying, only the last hop replies: with the earlier hops' outputs
    if (carried !== undefined ? next === undefined : run.replyOutput) {
      link.send({ type: 'result', runId: run.runId, start: run.start, hidden, computeMs: out.computeMs, queuedMs: out.queuedMs, ...(carried !== undefined && carried.length > 0 ? { carried: [...carried] } : {}) })
    }
  }

  #fail (link: SessionLink, runId: number, err: PetalError | unknown): void {
    link.log.debug({ runId, err }, 'run failed')
    link.send(toErrorFrame(err, runId))
  }
}
