// The judge side as a libp2p service: answers /mycelium/<swarm>/consensus-judge/1.0.0 with
// `serveJudging`, judging with the model function it is given.
//
//   services: { judge: consensusJudgeService({ swarm, judgeFn }) }
import type { PeerId, Startable, Stream } from '@libp2p/interface'
import { protocolId } from '../swarm.ts'
import { CONSENSUS_JUDGE_NAME, CONSENSUS_JUDGE_VERSION } from './constants.ts'
import { JudgingFailedError } from './errors.ts'
import { serveJudging, type ServeJudgingOptions, type ServeJudgingResult } from './judge-exchange.ts'

/** What judges: the model function and the checks and record writes around it (`setJudge`). */
export type JudgeHooks = Pick<ServeJudgingOptions, 'judgeFn' | 'accept' | 'answerText' | 'onCommit' | 'onReveal'>

export interface ConsensusJudgeInit extends Partial<JudgeHooks>, Pick<ServeJudgingOptions, 'timeoutMs'> {
  swarm: string
  /** Concurrent judging streams (default 4). */
  maxInboundStreams?: number
}

export interface ConsensusJudgeComponents {
  peerId: PeerId
  registrar: {
    handle: (protocol: string, handler: (stream: Stream) => Promise<void>, options: { maxInboundStreams: number, runOnLimitedConnection: boolean }) => Promise<void>
    unhandle: (protocol: string) => Promise<void>
  }
}

export function consensusJudgeProtocol (swarm: string): string {
  return protocolId(swarm, CONSENSUS_JUDGE_NAME, CONSENSUS_JUDGE_VERSION)
}

export class ConsensusJudgeService implements Startable {
  readonly protocol: string
  /** How each served stream ended, by status. */
  readonly stats: Partial<Record<ServeJudgingResult['status'], number>> = {}
  private readonly components: ConsensusJudgeComponents
  private readonly init: ConsensusJudgeInit
  private shutdown = new AbortController()
  private hooks: Partial<JudgeHooks>

  readonly [Symbol.toStringTag] = 'mycelium/consensus-judge'

  constructor (components: ConsensusJudgeComponents, init: ConsensusJudgeInit) {
    this.components = components
    this.init = init
    this.hooks = { ...init }
    this.protocol = consensusJudgeProtocol(init.swarm)
  }

  /**
   * Sets (or clears) the judge: a daemon builds the host first and its model later. Without a
   * `judgeFn` every request is declined with FAILED.
   */
  setJudge (hooks: Partial<JudgeHooks> | undefined): void {
    this.hooks = { ...(hooks ?? {}) }
  }

  async start (): Promise<void> {
    this.shutdown = new AbortController()
    await this.components.registrar.handle(this.protocol, async (stream) => {
      const h = this.hooks
      const r = await serveJudging(stream, {
        judge: this.components.peerId.toString(),
        judgeFn: h.judgeFn ?? (async () => { throw new JudgingFailedError('this node has no judge model') }),
        signal: this.shutdown.signal,
        ...(h.accept !== undefined ? { accept: h.accept } : {}),
        ...(h.answerText !== undefined ? { answerText: h.answerText } : {}),
        ...(h.onCommit !== undefined ? { onCommit: h.onCommit } : {}),
        ...(h.onReveal !== undefined ? { onReveal: h.onReveal } : {}),
        ...(this.init.timeoutMs !== undefined ? { timeoutMs: this.init.timeoutMs } : {})
      })
      this.stats[r.status] = (this.stats[r.status] ?? 0) + 1
    }, { maxInboundStreams: this.init.maxInboundStreams ?? 4, runOnLimitedConnection: false })
  }

  async stop (): Promise<void> {
    this.shutdown.abort()
    await this.components.registrar.unhandle(this.protocol)
  }
}

export function consensusJudgeService (init: ConsensusJudgeInit): (components: ConsensusJudgeComponents) => ConsensusJudgeService {
  return (components) => new ConsensusJudgeService(components, init)
}
