// The daemon's ledger service (node/reputation.ts) with two models: a failed calibration refuses
// its subject on that model only, and only when its verifier is admitted for that model; refused
// with no model asked (the API's plain routing) means refused somewhere and admitted nowhere; the
// summary lists the models a calibrated node is admitted for.
import { describe, expect, it } from 'vitest'
import { recordData, recordId, type ConsensusRecord } from '../../consensus/index.ts'
import type { JsonValue, SwarmState } from '../../crdt/index.ts'
import { startLedger } from '../../node/reputation.ts'
import { createRng } from '../../sharding/sim/random.ts'
import { makeState } from '../crdt/helpers.ts'
import { testSeed } from '../seed.ts'

const seed = testSeed()
const A = 'a'.repeat(64)
const B = 'b'.repeat(64)

describe(`ledger service: refused per model (TEST_SEED=${seed})`, () => {
  it('a failed calibration on A refuses on A; a pass on B routes the node again, still refused on A', async () => {
    const rng = createRng(seed)
    // one replica writes every record here: the writer is its own id (a founder)
    const g0 = await makeState(rng)
    const g1 = await makeState(rng)
    const founder = g0.peerId
    const calib = async (state: SwarmState, subject: string, model: string, passed: boolean, seq: number, challenge: string): Promise<void> => {
      const r: ConsensusRecord = { t: 'calibration', seq, subject, model, challenge, tasks: 3, tasksExact: passed ? 3 : 1, pairs: 2, pairsRight: passed ? 2 : 0, passed }
      await state.recordRound(recordId(r), recordData(r) as JsonValue)
    }
    const ledger = startLedger(g0, [founder], { debounceMs: 1 })
    try {
      // g1 is admitted for B only (by the founder); its failed verdict on A about n counts for nothing
      await calib(g0, g1.peerId, B, true, 1, 'g1-b')
      await calib(g0, 'n', A, false, 2, 'n-a')
      ledger.refresh()
      expect([ledger.refused('n'), ledger.refused('n', A), ledger.refused('n', B)]).toEqual([true, true, false])
      expect(ledger.summary().n).toMatchObject({ admitted: false, refused: true })
      expect(ledger.summary()[g1.peerId].models).toEqual([B])
      expect(ledger.summary()[founder].models).toBeUndefined() // a founder: every model
      // n passes on B (the model it now serves): admitted for B, routed again; still refused on A
      await calib(g0, 'n', B, true, 3, 'n-b')
      ledger.refresh()
      expect([ledger.refused('n'), ledger.refused('n', A), ledger.refused('n', B)]).toEqual([false, true, false])
      expect(ledger.summary().n).toMatchObject({ admitted: true, refused: false, models: [B] })
    } finally {
      ledger.stop()
    }
  })

  it('a failed verdict on A by a verifier admitted for B only refuses nobody', async () => {
    const rng = createRng(seed ^ 3)
    const g0 = await makeState(rng)
    const v = await makeState(rng)
    const write = async (state: SwarmState, r: ConsensusRecord): Promise<void> => { await state.recordRound(recordId(r), recordData(r) as JsonValue) }
    await write(g0, { t: 'calibration', seq: 1, subject: v.peerId, model: B, challenge: 'v-b', tasks: 3, tasksExact: 3, pairs: 2, pairsRight: 2, passed: true })
    await write(v, { t: 'calibration', seq: 2, subject: 'n', model: A, challenge: 'n-a', tasks: 3, tasksExact: 1, pairs: 2, pairsRight: 0, passed: false })
    // one replica holding both writers' records
    const both = { rounds: () => [...g0.rounds(), ...v.rounds()], onChange: () => () => {} }
    const ledger = startLedger(both, [g0.peerId])
    try {
      expect([ledger.refused('n'), ledger.refused('n', A)]).toEqual([false, false])
      // the same verdict on B (a model v is admitted for) refuses n on B
      await write(v, { t: 'calibration', seq: 3, subject: 'n', model: B, challenge: 'n-b', tasks: 3, tasksExact: 1, pairs: 2, pairsRight: 0, passed: false })
      ledger.refresh()
      expect([ledger.refused('n'), ledger.refused('n', A), ledger.refused('n', B)]).toEqual([true, false, true])
    } finally {
      ledger.stop()
    }
  })
})
