// npm run bench:consensus — the consensus benchmark of issue 7.
//
//   node scripts/bench-consensus.ts [--seeds N] [--rounds N] [--runs N] [--out FILE] [--help]
//
// 1. Adversary sweep (consensus/sim/swarm-sim.ts, seeded): every adversary kind at 0–50% of 40
//    nodes, 8 answers per round, 5 judges per pair; ours (requests routed by reputation,
//    reputation-weighted Bradley–Terry) vs majority vote vs unweighted Bradley–Terry vs the best
//    single node, plus 'pooled' (our aggregation on the baselines' uniformly drawn answers) and
//    the oracle ceiling (some answer in that pool was correct). Adversaries join through calibration after 30 honest rounds
//    (a Sybil wave a third of the way in); a second table has them as founding members.
// 2. Reputation ROC-AUC honest vs malicious after 50 rounds.
// 3. Consensus overhead (schedule + reveal check + Bradley–Terry + reputation, generation
//    excluded) per round with 32 answers and 64 judges.
// 4. Spot-checks on REAL stories260K shards (head [0,2) · audited [2,4) · tail [4,5)): honest
//    stages across codecs and verifier dtypes (false positives), a lazy stage that skips layer 3,
//    and corrupting stages; 20 checked positions per run.
// Prints tables, writes JSON under bench/results/, ends with one line per target.
import { mkdirSync, writeFileSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { loadModel, type HiddenCodec, type WeightDType } from '../engine/index.ts'
import { ADVERSARY_KINDS, runSwarm, type AdversaryKind, type SimOptions, type SimResult } from '../consensus/sim/swarm-sim.ts'
import { spotTrials } from '../consensus/sim/spot-sim.ts'
import { STORIES260K, TOK512 } from '../test/models.ts'

const ACCURACY_GAP_GOAL = 2 // points
const AUC_GOAL = 0.95
const AUC_ROUNDS = 50
const DETECTION_GOAL = 0.99
const CHECKS = 20
const OVERHEAD_GOAL_MS = 125

function parse (argv: string[]): { seeds: number, rounds: number, runs: number, out?: string } {
  let seeds = 4
  let rounds = 150
  let runs = 100
  let out: string | undefined
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--help' || a === '-h') {
      console.log('usage: node scripts/bench-consensus.ts [--seeds N (4)] [--rounds N (150)] [--runs N spot-check runs (100)] [--out FILE]')
      process.exit(0)
    } else if (a === '--seeds') seeds = Number(argv[++i])
    else if (a === '--rounds') rounds = Number(argv[++i])
    else if (a === '--runs') runs = Number(argv[++i])
    else if (a === '--out') out = argv[++i]
    else throw new Error(`unknown argument ${a}`)
  }
  return { seeds, rounds, runs, ...(out !== undefined ? { out } : {}) }
}

const args = parse(process.argv.slice(2))
const pct = (x: number): string => (Number.isFinite(x) ? (100 * x).toFixed(1) : '—')
const f = (x: number, d = 3): string => (Number.isFinite(x) ? x.toFixed(d) : '—')
const mean = (xs: number[]): number => { const v = xs.filter(Number.isFinite); return v.length === 0 ? NaN : v.reduce((a, b) => a + b, 0) / v.length }
const quantile = (xs: number[], q: number): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.floor(q * s.length))] }
function table (head: string[], rows: string[][]): void {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)))
  console.log(head.map((h, i) => h.padStart(w[i])).join('  '))
  for (const r of rows) console.log(r.map((c, i) => c.padStart(w[i])).join('  '))
}

interface Row { adversary: AdversaryKind, fraction: number, founding: boolean, ours: number, oursSteady: number, pooled: number, unweighted: number, majority: number, best: number, oracle: number, auc50: number, aucEnd: number, reference?: number }
const base = { nodes: 40, answersPerRound: 8, rounds: args.rounds, warmup: AUC_ROUNDS }
function averaged (o: Omit<SimOptions, 'seed'>): { sims: SimResult[], row: Omit<Row, 'adversary' | 'fraction' | 'founding'> } {
  const sims: SimResult[] = []
  for (let s = 1; s <= args.seeds; s++) sims.push(runSwarm({ ...o, seed: s }))
  return {
    sims,
    row: {
      ours: mean(sims.map((r) => r.ours.accuracy)),
      oursSteady: mean(sims.map((r) => r.ours.steadyAccuracy)),
      pooled: mean(sims.map((r) => r.pooled.accuracy)),
      unweighted: mean(sims.map((r) => r.unweighted.accuracy)),
      majority: mean(sims.map((r) => r.majority.accuracy)),
      best: mean(sims.map((r) => r.best.accuracy)),
      oracle: mean(sims.map((r) => r.oracle.accuracy)),
      auc50: mean(sims.map((r) => r.aucByRound[AUC_ROUNDS - 1])),
      aucEnd: mean(sims.map((r) => r.ours.auc))
    }
  }
}

const t0 = performance.now()
const rows: Row[] = []
const fractions = [0.1, 0.2, 0.3, 0.4, 0.5]
const clean = averaged({ ...base, adversary: 'none', fraction: 0 }).row
rows.push({ adversary: 'none', fraction: 0, founding: false, ...clean })
for (const founding of [false, true]) {
  for (const adversary of founding ? (['colluding', 'inverted', 'random'] as AdversaryKind[]) : ADVERSARY_KINDS) {
    for (const fraction of fractions) {
      const row: Row = { adversary, fraction, founding, ...averaged({ ...base, adversary, fraction, founding }).row }
      if (adversary === 'colluding') row.reference = averaged({ ...base, adversary, fraction, founding, honestJudging: true }).row.ours
      rows.push(row)
    }
  }
}
const head = ['adversary', 'frac', 'ours %', `ours after ${AUC_ROUNDS} %`, 'pooled %', 'unweighted BT %', 'majority %', 'best node %', 'oracle %', 'ours, adversaries judging honestly %', `AUC@${AUC_ROUNDS}`, 'AUC end']
for (const founding of [false, true]) {
  console.log(`\n${founding ? 'Adversaries as FOUNDING members (same standing as honest nodes from round 0)' : 'Adversaries JOIN through calibration after 30 honest rounds (Sybil wave a third of the way in)'} — ${args.seeds} seeds × ${args.rounds} rounds, 40 nodes, 8 answers/round, 5 judges/pair; winner accuracy`)
  table(head, rows.filter((r) => r.founding === founding || (r.adversary === 'none' && !founding)).map((r) => [r.adversary, r.fraction.toFixed(1), pct(r.ours), pct(r.oursSteady), pct(r.pooled), pct(r.unweighted), pct(r.majority), pct(r.best), pct(r.oracle), r.reference !== undefined ? pct(r.reference) : '', f(r.auc50), f(r.aucEnd)]))
}
// Copy-cat without commit–reveal: it copies honest verdicts and its reputation rises with theirs.
const copyOpen = averaged({ ...base, adversary: 'copy-cat', fraction: 0.3, commitReveal: false }).row
const copyClosed = rows.find((r) => r.adversary === 'copy-cat' && r.fraction === 0.3 && !r.founding) as Row
console.log(`\ncopy-cat 30%: AUC@${AUC_ROUNDS} with commit–reveal ${f(copyClosed.auc50)}, with votes in the clear ${f(copyOpen.auc50)}`)
const sweepS = (performance.now() - t0) / 1000

// Overhead: 32 answers, 64 judges.
const timed = runSwarm({ seed: 1, nodes: 64, adversary: 'colluding', fraction: 0.3, rounds: 100, answersPerRound: 32, timing: true })
const p50 = quantile(timed.ours.ms, 0.5)
const p95 = quantile(timed.ours.ms, 0.95)
console.log(`\nconsensus overhead per round, 32 answers, 64 judges (schedule + commit check + BT + reputation; generation excluded): p50 ${f(p50, 2)} ms, p95 ${f(p95, 2)} ms over ${timed.ours.ms.length} rounds (noisy: shared CPU)`)

// Spot-checks on real shards.
const load = async (start: number, end: number, dtype: WeightDType = 'f32', threads = 1): Promise<Awaited<ReturnType<typeof loadModel>>['shard']> => (await loadModel(STORIES260K, { start, end, dtype, threads, tokenizer: TOK512 })).shard
const head0 = await load(0, 2)
const stage = await load(2, 4)
const lazy = await load(2, 3)
const tail = await load(4, 5)
const verifiers: Record<string, Awaited<ReturnType<typeof load>>> = { f32: stage, f16: await load(2, 4, 'f16'), q8_0: await load(2, 4, 'q8_0'), 'f32 ×2 threads': await load(2, 4, 'f32', 2) }
interface SpotRow { stage: string, codec: HiddenCodec, verifier: string, runs: number, flagged: number, tokensChanged: number, maxValueError: number }
const spotRows: SpotRow[] = []
const trial = (name: string, codec: HiddenCodec, verifier: string, o: { stage?: typeof stage, corruption?: number, corruptRate?: number }): SpotRow => {
  const r = spotTrials({ head: head0, stage: o.stage ?? stage, honest: stage, tail, verifier: verifiers[verifier], runs: args.runs, promptTokens: 4, steps: 40, checks: CHECKS, codec, seed: 7, ...(o.corruption !== undefined ? { corruption: o.corruption, corruptRate: o.corruptRate ?? 1 } : {}) })
  const row = { stage: name, codec, verifier, runs: r.runs, flagged: r.flagged, tokensChanged: r.tokensChanged, maxValueError: r.maxValueError }
  spotRows.push(row)
  return row
}
for (const codec of ['f32', 'f16', 'int8'] as const) for (const v of Object.keys(verifiers)) trial('honest', codec, v, {})
for (const v of ['f32', 'q8_0']) trial('lazy (skips layer 3)', 'int8', v, { stage: lazy })
const corruptRows = [0.005, 0.01, 0.02, 0.1, 0.3].map((c) => trial(`corrupting ${c} × RMS noise`, 'int8', 'f32', { corruption: c }))
trial('corrupting 0.3 × RMS, 25% of steps', 'int8', 'f32', { corruption: 0.3, corruptRate: 0.25 })
console.log(`\nspot-checks on real stories260K shards: ${args.runs} runs × (4-token prompt + 40 generated), ${CHECKS} positions checked per run, top-8, tolerance fingerprintTolerance(stage, verifier): 0.005 of the row max, 0.05 with q8_0 on one side`)
table(['audited stage', 'codec', 'verifier', 'runs', 'flagged %', 'tokens changed %', 'max value err'], spotRows.map((r) => [r.stage, r.codec, r.verifier, String(r.runs), pct(r.flagged / r.runs), r.stage === 'honest' ? '' : pct(r.tokensChanged / r.runs), f(r.maxValueError, 4)]))

// Targets.
const colluding30 = rows.find((r) => r.adversary === 'colluding' && r.fraction === 0.3 && !r.founding) as Row
const gapClean = 100 * (clean.ours - colluding30.ours)
const gapRef = 100 * ((colluding30.reference ?? NaN) - colluding30.ours)
const verdicts: string[] = []
verdicts.push(`winner accuracy, 30% colluding judges (joined): ${pct(colluding30.ours)}% vs ${pct(clean.ours)}% without adversaries = ${f(gapClean, 1)} points (goal ≤ ${ACCURACY_GAP_GOAL}): ${gapClean <= ACCURACY_GAP_GOAL ? 'met' : 'not met'}`)
verdicts.push(`winner accuracy, 30% colluding judges (joined) vs the same nodes judging honestly: ${pct(colluding30.ours)}% vs ${pct(colluding30.reference ?? NaN)}% = ${f(gapRef, 1)} points (goal ≤ ${ACCURACY_GAP_GOAL}): ${gapRef <= ACCURACY_GAP_GOAL ? 'met' : 'not met'}`)
for (const r of rows.filter((x) => x.fraction === 0.3)) {
  verdicts.push(`reputation AUC after ${AUC_ROUNDS} rounds, ${r.adversary} 30%${r.founding ? ' (founding)' : ''}: ${f(r.auc50)} (goal ≥ ${AUC_GOAL}): ${r.auc50 >= AUC_GOAL ? 'met' : 'not met'}`)
}
const strongest = corruptRows.find((r) => r.stage.startsWith('corrupting 0.1')) as SpotRow
verdicts.push(`corrupting stage (0.1 × RMS noise, every step) detected within ${CHECKS} checked steps: ${pct(strongest.flagged / strongest.runs)}% of ${strongest.runs} runs (goal ≥ ${100 * DETECTION_GOAL}%): ${strongest.flagged / strongest.runs >= DETECTION_GOAL ? 'met' : 'not met'}`)
const honestFlags = spotRows.filter((r) => r.stage === 'honest').reduce((a, r) => a + r.flagged, 0)
verdicts.push(`honest stages flagged (false positives) across codecs and verifier dtypes: ${honestFlags} of ${spotRows.filter((r) => r.stage === 'honest').reduce((a, r) => a + r.runs, 0)} runs (goal 0): ${honestFlags === 0 ? 'met' : 'not met'}`)
verdicts.push(`aggregation + reputation update, 32 answers: p50 ${f(p50, 2)} ms (goal ≤ ${OVERHEAD_GOAL_MS} ms): ${p50 <= OVERHEAD_GOAL_MS ? 'met' : 'not met'}`)

const out = resolve(args.out ?? `bench/results/consensus-${new Date().toISOString().replace(/[:.]/g, '-')}.json`)
mkdirSync(dirname(out), { recursive: true })
writeFileSync(out, JSON.stringify({ command: `node scripts/bench-consensus.ts ${process.argv.slice(2).join(' ')}`.trim(), args, sweepS, rows, copyOpen, overhead: { p50, p95, ms: timed.ours.ms }, spotRows }, null, 2))
console.log(`\nresults: ${out}\n`)
for (const v of verdicts) console.log(v)
for (const s of [head0, stage, lazy, tail, ...Object.values(verifiers)]) if (s !== stage) await s.close()
await stage.close()
