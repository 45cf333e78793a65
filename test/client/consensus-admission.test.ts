// Issue 7: only calibrated nodes answer in consensus rounds. The owner routes a round's chains
// (client/consensus.ts roundChains) only through nodes its ledger admits and does not exclude;
// a pending newcomer is never part of an answering chain, whatever it serves. With fewer admitted
// chains than k the round runs with fewer answers; with fewer than 2 it is a NoRouteError that
// names the nodes left out (thrown before any stream is opened).
import { describe, expect, it } from 'vitest'
import { roundChains, runConsensusRound, type ConsensusRun } from '../../client/consensus.ts'
import { NoRouteError } from '../../client/errors.ts'
import { applyCalibration, initialReputation, type ReputationState } from '../../consensus/index.ts'
import type { NodeRecord } from '../../crdt/index.ts'
import { ownerRun } from './consensus-run.ts'

const MODEL = 'm'.repeat(64)
const N_LAYERS = 4

function record (start: number, end: number): NodeRecord {
  return { capabilities: { model: MODEL, dtype: 'f32', decodeLayerMs: 1, prefillLayerMsPerToken: 1, memoryBytes: 1 << 30 }, layers: [{ model: MODEL, start, end }], addresses: [], version: 'test' }
}

/** A run over `records` (all online) with `state` as the owner's ledger; opening a stream fails the test. */
function runOf (records: Record<string, NodeRecord>, state: ReputationState, excluded: string[] = []): ConsensusRun {
  return ownerRun({ self: 'owner', records: new Map(Object.entries(records)), state, model: MODEL, nLayers: N_LAYERS, excluded })
}

// whole-model nodes w0–w3 and a split pair s0 ([0,2)) + s1 ([2,4))
const swarm = { w0: record(0, 4), w1: record(0, 4), w2: record(0, 4), w3: record(0, 4), s0: record(0, 2), s1: record(2, 4) }

describe('consensus rounds route only admitted nodes (issue 7)', () => {
  it('a pending newcomer authors no answer and is in no chain; excluded nodes neither', () => {
    // w0, w1, s0 genesis; w2 calibrated; w3 and s1 pending
    const state = applyCalibration(initialReputation(['w0', 'w1', 's0']), 'w2')
    expect(state.nodes.get('w3')?.admitted ?? false).toBe(false)
    const chains = roundChains(runOf(swarm, state), 8)
    const peers = chains.map((c) => c.map((h) => String(h.peer)))
    // s0 has no admitted successor for [2,4) (s1 is pending): no split chain
    expect(peers.map((c) => c.join('>')).sort()).toEqual(['w0', 'w1', 'w2'])
    for (const c of peers) {
      expect(c).not.toContain('w3')
      expect(c).not.toContain('s1')
    }
    // once calibrated, s1 completes the split chain and w3 answers too
    const later = applyCalibration(applyCalibration(state, 'w3'), 's1')
    expect(roundChains(runOf(swarm, later), 8).map((c) => c.map((h) => String(h.peer)).join('>')).sort()).toEqual(['s0>s1', 'w0', 'w1', 'w2', 'w3'])
    // an admitted node the owner excludes (spot-check, refused) stays out
    expect(roundChains(runOf(swarm, later, ['w1', 's1']), 8).map((c) => c.map((h) => String(h.peer)).join('>')).sort()).toEqual(['w0', 'w2', 'w3'])
  })

  it('fewer admitted chains than k: the round has fewer answers (k is an upper bound)', () => {
    const state = initialReputation(['w0', 'w1'])
    expect(roundChains(runOf(swarm, state), 3)).toHaveLength(2)
    expect(roundChains(runOf(swarm, state), 2)).toHaveLength(2)
  })

  it('fewer than 2 admitted chains: NoRouteError naming the pending nodes, before any stream opens', async () => {
    const state = initialReputation(['w0'])
    const err = await runConsensusRound(runOf(swarm, state), { k: 3 }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(NoRouteError)
    expect((err as Error).message).toContain('1 for model')
    expect((err as Error).message).toContain('5 online nodes are not admitted for it yet')
  })
})
