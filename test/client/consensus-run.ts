// A consensus owner's run over given node records and reputation, for tests of the owner's
// choices (chains, schedule): nothing in it opens a stream or generates.
import type { ConsensusRun } from '../../client/consensus.ts'
import type { ReputationState } from '../../consensus/index.ts'
import type { NodeRecord } from '../../crdt/index.ts'

export function ownerRun (o: { self: string, records: ReadonlyMap<string, NodeRecord>, state: ReputationState, model: string, nLayers: number, excluded?: readonly string[] }): ConsensusRun {
  const online = (): string[] => [...o.records.keys()]
  return {
    self: o.self,
    swarm: 'test',
    state: { nodes: () => o.records, online } as unknown as ConsensusRun['state'],
    online,
    openStream: async () => { throw new Error('no stream is opened here') },
    inferenceProtocol: '/test',
    info: { id: o.model, manifest: { nLayers: o.nLayers, dim: 8 } } as unknown as ConsensusRun['info'],
    tokenizer: {} as unknown as ConsensusRun['tokenizer'],
    prompt: [1, 2],
    promptText: 'x',
    maxTokens: 4,
    seed: 1,
    sampling: { temperature: 0, topP: 1, topK: 0 },
    codecBytes: 4,
    host: { reputation: () => o.state, ...(o.excluded !== undefined ? { excluded: (p: string) => (o.excluded ?? []).includes(p) } : {}) },
    signal: new AbortController().signal
  }
}
