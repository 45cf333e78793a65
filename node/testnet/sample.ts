// The testnet's sample generation, made the way a user of the swarm makes one: the SDK's
// `connect` (a light client joining through the relay) and `generate`, greedy.
export interface SampleRequest {
  bootstrap: string[]
  swarm: string
  /** The model file (its tokenizer is used unless `tokenizer` names one). */
  model: string
  tokenizer?: string
  prompt: string
  maxTokens: number
  onText: (text: string) => void
  signal?: AbortSignal
}

export interface SampleResult {
  tokens: number
  /** performance.now() at the first token: milliseconds since this process started. */
  firstTokenAt: number
  chain: Array<{ peer: string, start: number, end: number }>
}

/** How long the SDK may wait for the nodes' records to reach it and cover the model. */
const SAMPLE_ROUTE_WAIT_MS = 30_000

export async function sampleGeneration (r: SampleRequest): Promise<SampleResult> {
  // loaded here: libp2p and the engine are not needed by the CLI's other commands at start-up
  const { connect } = await import('../../client/index.ts')
  const client = await connect({
    bootstrap: r.bootstrap,
    swarm: r.swarm,
    ...(r.tokenizer !== undefined ? { tokenizer: r.tokenizer } : { model: r.model }),
    routeWaitMs: SAMPLE_ROUTE_WAIT_MS,
    ...(r.signal !== undefined ? { signal: r.signal } : {})
  })
  let tokens = 0
  let firstTokenAt = 0
  let chain: SampleResult['chain'] = []
  try {
    for await (const ev of client.generate({ prompt: r.prompt, maxTokens: r.maxTokens, temperature: 0, ...(r.signal !== undefined ? { signal: r.signal } : {}) })) {
      if (ev.type === 'token') {
        if (tokens++ === 0) firstTokenAt = performance.now()
        r.onText(ev.text)
      } else {
        r.onText(ev.tail)
        chain = ev.chain.map((h) => ({ peer: String(h.peer), start: h.start, end: h.end }))
      }
    }
  } finally {
    await client.close()
  }
  return { tokens, firstTokenAt, chain }
}
