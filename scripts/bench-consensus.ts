// npm run bench:consensus — the consensus benchmark of issue 7.
//
//   node scripts/bench-consensus.ts [--seeds N] [--auc-seeds N] [--rounds N] [--runs N] [--out FILE] [--help]
//
// 1. Adversary sweep (consensus/sim/swarm-sim.ts, seeded): every adversary kind at 0–50% of 40
//    nodes, 8 answers per round, JUDGES_PER_PAIR (10) judges per pair; ours (requests routed by reputation,
//    reputation-weighted Bradley–Terry) vs majority vote vs unweighted Bradley–Terry vs the best
//    single node, plus 'pooled' (our aggregation on the baselines' uniformly drawn answers) and
//    the oracle ceiling (some answer in that pool was correct). Adversaries join through calibration after 30 honest rounds
//    (a Sybil wave a third of the way in); a second table has them as founding members.
// 2. Reputation ROC-AUC honest vs malicious after 50 rounds; for the camouflaged adversaries, with
//    and without the coordination term over --auc-seeds seeds, beside the AUC a detector told the
//    attack rounds would reach; honest nodes' weights with and without the term (false penalties).
// 3. Consensus overhead (schedule + reveal check + Bradley–Terry + reputation, generation
//    excluded) per round with 32 answers and 64 judges.
// 4. Spot-checks on REAL stories260K shards (head [0,2) · audited [2,4) · tail [4,5)): honest
//    stages across codecs and verifier dtypes (false positives), a lazy stage that skips layer 3,
//    and corrupting stages; 20 checked positions per run.
// 5. Prompt injection against the likelihood judge on REAL stories260K (consensus/sim/injection.ts).
// Prints tables, writes JSON under bench/results/, ends with one line per target.
import { mkdirSync, writeFileSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { loadModel, type HiddenCodec, type WeightDType } from '../engine/index.ts'
import { ADVERSARY_KINDS, runSwarm, type AdversaryKind, type SimOptions, type SimResult } from '../consensus/sim/swarm-sim.ts'
import { DEFAULT_REPUTATION_PARAMS } from '../consensus/reputation.ts'
import { JUDGES_PER_PAIR } from '../consensus/constants.ts'
import { spotTrials } from '../consensus/sim/spot-sim.ts'
import { INJECTIONS, injectionTrials, type InjectionRow } from '../consensus/sim/injection.ts'
import { STORIES260K, TOK512 } from '../test/models.ts'

const ACCURACY_GAP_GOAL = 2 // points
const AUC_GOAL = 0.95
const AUC_ROUNDS = 50
const DETECTION_GOAL = 0.99
const CHECKS = 20
const OVERHEAD_GOAL_MS = 125

function parse (argv: string[]): { seeds: number, aucSeeds: number, rounds: number, runs: number, out?: string } {
  let seeds = 4
  let aucSeeds = 16
  let rounds = 150
  let runs = 100
  let out: string | undefined
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    if (a === '--help' || a === '-h') {
      console.log('usage: node scripts/bench-consensus.ts [--seeds N (4)] [--auc-seeds N camouflage seeds (16)] [--rounds N (150)] [--runs N spot-check runs (100)] [--out FILE]')
      process.exit(0)
    } else if (a === '--seeds') seeds = Number(argv[++i])
    else if (a === '--auc-seeds') aucSeeds = Number(argv[++i])
    else if (a === '--rounds') rounds = Number(argv[++i])
    else if (a === '--runs') runs = Number(argv[++i])
    else if (a === '--out') out = argv[++i]
    else throw new Error(`unknown argument ${a}`)
  }
  return { seeds, aucSeeds, rounds, runs, ...(out !== undefined ? { out } : {}) }
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
  console.log(`\n${founding ? 'Adversaries as FOUNDING members (same standing as honest nodes from round 0)' : 'Adversaries JOIN through calibration after 30 honest rounds (Sybil wave a third of the way in)'} — ${args.seeds} seeds × ${args.rounds} rounds, 40 nodes, 8 answers/round, ${JUDGES_PER_PAIR} judges/pair; winner accuracy`)
  table(head, rows.filter((r) => r.founding === founding || (r.adversary === 'none' && !founding)).map((r) => [r.adversary, r.fraction.toFixed(1), pct(r.ours), pct(r.oursSteady), pct(r.pooled), pct(r.unweighted), pct(r.majority), pct(r.best), pct(r.oracle), r.reference !== undefined ? pct(r.reference) : '', f(r.auc50), f(r.aucEnd)]))
}
// Copy-cat without commit–reveal: it copies honest verdicts and its reputation rises with theirs.
const copyOpen = averaged({ ...base, adversary: 'copy-cat', fraction: 0.3, commitReveal: false }).row
const copyClosed = rows.find((r) => r.adversary === 'copy-cat' && r.fraction === 0.3 && !r.founding) as Row
console.log(`\ncopy-cat 30%: AUC@${AUC_ROUNDS} with commit–reveal ${f(copyClosed.auc50)}, with votes in the clear ${f(copyOpen.auc50)}`)

// The coordination term (reputation.ts) against camouflage: with and without, over more seeds
// (AUC after 50 rounds only needs 80 rounds per run). 'told' = the AUC of a detector told which
// rounds were attack rounds (agreement in those rounds only); 'footprint' = adversaries that voted
// or answered in an attack round at all within the 50 rounds.
interface CoordRow { adversary: AdversaryKind, judgesPerPair: number, coordination: number, auc50: number, aucMin: number, told: number, footprint: string, accuracy: number, cleanAccuracy: number }
const coordRows: CoordRow[] = []
const off = { ...DEFAULT_REPUTATION_PARAMS, coordination: 0 }
const manySeeds = (o: Omit<SimOptions, 'seed'>): SimResult[] => Array.from({ length: args.aucSeeds }, (_, i) => runSwarm({ ...o, seed: i + 1 }))
for (const judgesPerPair of [5, JUDGES_PER_PAIR]) {
  for (const coordination of [0, DEFAULT_REPUTATION_PARAMS.coordination]) {
    const params = { ...DEFAULT_REPUTATION_PARAMS, coordination }
    const cleanRuns = manySeeds({ ...base, rounds: AUC_ROUNDS, adversary: 'none', fraction: 0, params, judgesPerPair })
    for (const adversary of (judgesPerPair === JUDGES_PER_PAIR ? ['camouflaged', 'camouflaged-solo'] : ['camouflaged']) as AdversaryKind[]) {
      const sims = manySeeds({ ...base, rounds: AUC_ROUNDS, adversary, fraction: 0.3, params, judgesPerPair })
      const a = sims.map((r) => r.aucByRound[AUC_ROUNDS - 1])
      coordRows.push({
        adversary,
        judgesPerPair,
        coordination,
        auc50: mean(a),
        aucMin: Math.min(...a),
        told: mean(sims.map((r) => r.attackOracleAuc)),
        footprint: adversary === 'camouflaged' ? `${sims.reduce((x, r) => x + r.footprint.withFootprint, 0)}/${sims.reduce((x, r) => x + r.footprint.adversaries, 0)}` : '',
        accuracy: mean(sims.map((r) => r.ours.accuracy)),
        cleanAccuracy: mean(cleanRuns.map((r) => r.ours.accuracy))
      })
    }
  }
}
console.log(`\ncamouflaged adversaries, 30%, ${args.aucSeeds} seeds, ${AUC_ROUNDS} rounds after they join (${AUC_ROUNDS + 30} rounds per run): reputation AUC@${AUC_ROUNDS} without / with the coordination term (${DEFAULT_REPUTATION_PARAMS.coordination}); 'told' = a detector told the attack rounds; accuracy over those ${AUC_ROUNDS} rounds`)
table(['adversary', 'judges/pair', 'coordination', `AUC@${AUC_ROUNDS} mean`, 'min', 'told', 'adversaries with a footprint', 'ours accuracy %', 'no adversary %'], coordRows.map((r) => [r.adversary, String(r.judgesPerPair), String(r.coordination), f(r.auc50), f(r.aucMin), r.adversary === 'camouflaged' ? f(r.told) : '', r.footprint, pct(r.accuracy), pct(r.cleanAccuracy)]))
// False penalties: honest nodes' weights at the end of clean runs, without and with the term.
const honestWeights = (params: typeof off, judgesPerPair = JUDGES_PER_PAIR): { zero: number, nodes: number, min: number, median: number, score: number } => {
  const sims = manySeeds({ ...base, adversary: 'none', fraction: 0, params, judgesPerPair })
  const w = sims.flatMap((r) => r.honest.weights)
  return { zero: w.filter((x) => x === 0).length, nodes: w.length, min: Math.min(...w), median: quantile(w, 0.5), score: mean(sims.flatMap((r) => r.honest.scores)) }
}
const falsePenalty = { off: honestWeights(off), on: honestWeights(DEFAULT_REPUTATION_PARAMS), on5: honestWeights(DEFAULT_REPUTATION_PARAMS, 5) }
console.log(`honest nodes without adversaries (${args.aucSeeds} seeds × ${args.rounds} rounds, ${JUDGES_PER_PAIR} judges/pair): weight 0 for ${falsePenalty.off.zero} / ${falsePenalty.on.zero} of ${falsePenalty.on.nodes} (without / with the term); min weight ${f(falsePenalty.off.min)} / ${f(falsePenalty.on.min)}; median ${f(falsePenalty.off.median)} / ${f(falsePenalty.on.median)}; mean Beta score ${f(falsePenalty.off.score)} / ${f(falsePenalty.on.score)}`)
console.log(`  the same term with 5 judges/pair: weight 0 for ${falsePenalty.on5.zero} of ${falsePenalty.on5.nodes}, median ${f(falsePenalty.on5.median)}`)
// Founders: does the term stop 40% colluding founders?
const foundersOff = averaged({ ...base, adversary: 'colluding', fraction: 0.4, founding: true, params: off }).row
const foundersOn = rows.find((r) => r.adversary === 'colluding' && r.fraction === 0.4 && r.founding) as Row
console.log(`40% colluding founders: ours ${pct(foundersOff.ours)}% without the term, ${pct(foundersOn.ours)}% with it (AUC@${AUC_ROUNDS} ${f(foundersOff.auc50)} / ${f(foundersOn.auc50)})`)
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
console.log(`\nspot-checks on real stories260K shards: ${args.runs} runs × (4-token prompt + 40 generated), ${CHECKS} positions checked per run, top-8, tolerance fingerprintTolerance(stage, verifier): 0.005 of the row max, 0.07 with q8_0 on one side`)
table(['audited stage', 'codec', 'verifier', 'runs', 'flagged %', 'tokens changed %', 'max value err'], spotRows.map((r) => [r.stage, r.codec, r.verifier, String(r.runs), pct(r.flagged / r.runs), r.stage === 'honest' ? '' : pct(r.tokensChanged / r.runs), f(r.maxValueError, 4)]))

// Prompt injection against the REAL likelihood judge (stories260K, whole model).
const judgeModel = await loadModel(STORIES260K, { tokenizer: TOK512 })
const injection = await injectionTrials(judgeModel.shard, judgeModel.tokenizer)
await judgeModel.shard.close()
console.log(`\nprompt injection against the likelihood judge (stories260K): ${injection.prompts} prompts × ${injection.answerTokens}-token continuations (T 0.8; weaker: T 1.6), ${INJECTIONS.length} injection strings, each pair judged in both orders; share the first-named answer wins / loses / ties (${f(injection.ms / 1000, 1)} s)`)
table(['pair', 'judged', 'wins %', 'loses %', 'ties %'], injection.rows.map((r) => [r.pair, String(r.judged), pct(r.wins), pct(r.losses), pct(r.ties)]))

// Targets.
const colluding30 = rows.find((r) => r.adversary === 'colluding' && r.fraction === 0.3 && !r.founding) as Row
const gapClean = 100 * (clean.ours - colluding30.ours)
const gapRef = 100 * ((colluding30.reference ?? NaN) - colluding30.ours)
const verdicts: string[] = []
verdicts.push(`winner accuracy, 30% colluding judges (joined): ${pct(colluding30.ours)}% vs ${pct(clean.ours)}% without adversaries = ${f(gapClean, 1)} points (goal ≤ ${ACCURACY_GAP_GOAL}): ${gapClean <= ACCURACY_GAP_GOAL ? 'met' : 'not met'}`)
verdicts.push(`winner accuracy, 30% colluding judges (joined) vs the same nodes judging honestly: ${pct(colluding30.ours)}% vs ${pct(colluding30.reference ?? NaN)}% = ${f(gapRef, 1)} points (goal ≤ ${ACCURACY_GAP_GOAL}): ${gapRef <= ACCURACY_GAP_GOAL ? 'met' : 'not met'}`)
for (const r of rows.filter((x) => x.fraction === 0.3 && x.adversary !== 'camouflaged-solo')) {
  verdicts.push(`reputation AUC after ${AUC_ROUNDS} rounds, ${r.adversary} 30%${r.founding ? ' (founding)' : ''}: ${f(r.auc50)} (goal ≥ ${AUC_GOAL}): ${r.auc50 >= AUC_GOAL ? 'met' : 'not met'}`)
}
const camo = coordRows.find((r) => r.adversary === 'camouflaged' && r.coordination > 0 && r.judgesPerPair === JUDGES_PER_PAIR) as CoordRow
verdicts.push(`reputation AUC after ${AUC_ROUNDS} rounds, camouflaged 30% over ${args.aucSeeds} seeds: ${f(camo.auc50)} (without the coordination term ${f((coordRows.find((r) => r.adversary === 'camouflaged' && r.coordination === 0 && r.judgesPerPair === JUDGES_PER_PAIR) as CoordRow).auc50)}; a detector told the attack rounds ${f(camo.told)}) (goal ≥ ${AUC_GOAL}): ${camo.auc50 >= AUC_GOAL ? 'met' : 'not met'}`)
const solo = rows.find((r) => r.adversary === 'camouflaged-solo' && r.fraction === 0.3 && !r.founding) as Row
verdicts.push(`(not an issue target) camouflaged-solo 30%, each defecting alone: AUC@${AUC_ROUNDS} ${f(solo.auc50)}; its damage: ours ${pct(solo.ours)}% vs ${pct(clean.ours)}% without adversaries`)
const gain = injection.rows.filter((r) => r.pair.startsWith('injected') && r.pair.endsWith('the same answer clean'))
verdicts.push(`(informative) prompt injection vs the likelihood judge: an injected answer beat its own clean version in ${pct(mean(gain.map((r) => r.wins)))}% of comparisons; a weaker answer padded with greedy text beat a clean honest one in ${pct((injection.rows.find((r) => r.pair.startsWith('weaker answer padded')) as InjectionRow).wins)}%`)
const strongest = corruptRows.find((r) => r.stage.startsWith('corrupting 0.1')) as SpotRow
verdicts.push(`corrupting stage (0.1 × RMS noise, every step) detected within ${CHECKS} checked steps: ${pct(strongest.flagged / strongest.runs)}% of ${strongest.runs} runs (goal ≥ ${100 * DETECTION_GOAL}%): ${strongest.flagged / strongest.runs >= DETECTION_GOAL ? 'met' : 'not met'}`)
const honestFlags = spotRows.filter((r) => r.stage === 'honest').reduce((a, r) => a + r.flagged, 0)
verdicts.push(`honest stages flagged (false positives) across codecs and verifier dtypes: ${honestFlags} of ${spotRows.filter((r) => r.stage === 'honest').reduce((a, r) => a + r.runs, 0)} runs (goal 0): ${honestFlags === 0 ? 'met' : 'not met'}`)
verdicts.push(`aggregation + reputation update, 32 answers: p50 ${f(p50, 2)} ms (goal ≤ ${OVERHEAD_GOAL_MS} ms): ${p50 <= OVERHEAD_GOAL_MS ? 'met' : 'not met'}`)

const out = resolve(args.out ?? `bench/results/consensus-${new Date().toISOString().replace(/[:.]/g, '-')}.json`)
mkdirSync(dirname(out), { recursive: true })
writeFileSync(out, JSON.stringify({ command: `node scripts/bench-consensus.ts ${process.argv.slice(2).join(' ')}`.trim(), args, sweepS, rows, copyOpen, coordRows, falsePenalty, foundersOff, injection, overhead: { p50, p95, ms: timed.ours.ms }, spotRows }, null, 2))
console.log(`\nresults: ${out}\n`)
for (const v of verdicts) console.log(v)
for (const s of [head0, stage, lazy, tail, ...Object.values(verifiers)]) if (s !== stage) await s.close()
await stage.close()
