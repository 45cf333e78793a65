// The judge side as a libp2p service: answers /mycelium/<swarm>/consensus-judge/1.0.0 with
// `serveJudging`, judging with the model function it is given.
//
//   services: { judge: consensusJudgeService({ swarm, judgeFn }) }
import type { PeerId, Startable, Stream } from '@libp2p/interface'
import { protocolId } from '../swarm.ts'
import { CONSENSUS_JUDGE_NAME, CONSENSUS_JUDGE_VERSION } from './constants.ts'
import { serveJudging, type ServeJudgingOptions, type ServeJudgingResult } from './judge-exchange.ts'

export interface ConsensusJudgeInit extends Pick<ServeJudgingOptions, 'judgeFn' | 'accept' | 'onCommit' | 'timeoutMs'> {
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

  readonly [Symbol.toStringTag] = 'mycelium/consensus-judge'

  constructor (components: ConsensusJudgeComponents, init: ConsensusJudgeInit) {
    this.components = components
    this.init = init
    this.protocol = consensusJudgeProtocol(init.swarm)
  }

  async start (): Promise<void> {
    this.shutdown = new AbortController()
    await this.components.registrar.handle(this.protocol, async (stream) => {
      const r = await serveJudging(stream, {
        judge: this.components.peerId.toString(),
        judgeFn: this.init.judgeFn,
        signal: this.shutdown.signal,
        ...(this.init.accept !== undefined ? { accept: this.init.accept } : {}),
        ...(this.init.onCommit !== undefined ? { onCommit: this.init.onCommit } : {}),
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
