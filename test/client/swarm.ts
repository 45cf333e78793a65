// A real swarm for SDK and API tests: three `mycelium node start --model stories260K` daemons
// (each with 10 MiB, so the allocation must split the model's 5 layers over all three) that
// serve their allocated ranges; resolves once every daemon serves its part of one covered
// allocation. The single-process greedy reference comes from the engine.
import { join } from 'node:path'
import { generate as engineGenerate, loadShard, createSampler, createTextStream, openModel, openTokenizer, sessionStepper } from '../../engine/index.ts'
import { controlRequest } from '../../node/control.ts'
import { STORIES260K } from '../models.ts'
import { pollUntil, scratch, startDaemon } from '../node/daemons.ts'
import type { Started } from '../node/daemons.ts'

export function readyOf (d: Started): Record<string, unknown> {
  return d.events.find((e) => e.event === 'ready') as Record<string, unknown>
}

/** The daemon's TCP address (ends in /p2p/<id>). */
export function addrOf (d: Started): string {
  return (readyOf(d).listen as string[]).find((a) => a.includes('/tcp/') && !a.includes('/ws')) as string
}

export interface TestSwarm { daemons: Started[], manifest: string }

/** Starts `n` auto-allocating daemons (`extra` flags on the first one) and waits for one covered allocation they all serve. */
export async function startSwarm (swarm: string, n = 3, extra: string[] = []): Promise<TestSwarm> {
  const daemons: Started[] = []
  for (let i = 0; i < n; i++) {
    const boot = daemons.length > 0 ? ['--bootstrap', ...daemons.map(addrOf)] : []
    daemons.push(await startDaemon(scratch('mycelium-sdk-'), ['--swarm', swarm, '--model', STORIES260K, '--max-memory', '10M', '--threads', '1', ...boot, ...(i === 0 ? extra : [])]))
  }
  const ids = daemons.map((d) => readyOf(d).peerId as string)
  const manifest = await pollUntil('the daemons to serve one covered allocation', async () => {
    const a = (await controlRequest(join(daemons[0].dir, 'control.sock'), { cmd: 'allocation' })) as unknown as { allocation?: { model: string, covered: boolean, assignments: Array<{ peerId: string, start: number, end: number }> } }
    const assignments = a.allocation?.covered === true ? a.allocation.assignments : []
    const serving = (d: Started): Record<string, unknown> | undefined => d.events.filter((e) => e.event === 'serving').at(-1)
    const agreed = assignments.length === n && daemons.every((d, i) => {
      const mine = assignments.find((x) => x.peerId === ids[i])
      return mine !== undefined && serving(d)?.start === mine.start && serving(d)?.end === mine.end
    })
    return agreed ? a.allocation?.model : undefined
  }, 30_000)
  return { daemons, manifest }
}

/** Prompt ids and the engine's greedy continuation (generated tokens only) for `steps` positions; `textOf(n)` is the text of the first n. */
export async function reference (text: string, steps: number): Promise<{ prompt: number[], tokens: number[], text: string, textOf: (n: number) => string }> {
  const source = await openModel(STORIES260K)
  const tokenizer = await openTokenizer(source)
  const prompt = tokenizer.encode(text, { bos: true })
  const whole = await loadShard(source)
  const session = whole.openSession({ maxLength: steps })
  const all: number[] = []
  for await (const ev of engineGenerate(sessionStepper(session), { prompt, steps, sampler: createSampler(), bosId: source.config.bosId })) {
    if (ev.type === 'token') all.push(ev.id)
  }
  await whole.close()
  // generate yields the forced prompt tokens (positions 1…) too
  const tokens = all.slice(prompt.length - 1)
  const textOf = (n: number): string => {
    const stream = createTextStream(tokenizer)
    let prev = prompt[prompt.length - 1]
    let out = ''
    for (const id of tokens.slice(0, n)) { out += stream.push(prev, id); prev = id }
    return out + stream.flush()
  }
  return { prompt, tokens, text: textOf(tokens.length), textOf }
}
