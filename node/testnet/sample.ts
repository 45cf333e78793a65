// The testnet's sample generation, as a user of the swarm would run it: through the SDK
// (client/ `connect` + `generate`) when this build has it, else through the chain runner
// (`runInference`) over the chain the launcher started, with a plain libp2p client.
import type { Stream } from '@libp2p/interface'
import type { ChainHop } from '../../protocols/index.ts'

export interface SampleRequest {
  bootstrap: string[]
  swarm: string
  /** The model file (its tokenizer is used unless `tokenizer` names one). */
  model: string
  tokenizer?: string
  prompt: string
  maxTokens: number
  /** Stages the launcher started (for the fallback), and their listen addresses. */
  chain: Array<ChainHop & { addr: string }>
  onText: (text: string) => void
  signal?: AbortSignal
}

export interface SampleResult { tokens: number, via: 'sdk' | 'runInference', firstTokenAt: number }

interface SdkClient {
  generate: (options: { prompt: string, maxTokens: number, temperature: number, signal?: AbortSignal }) => AsyncIterable<{ type: string, text?: string, tail?: string }>
  close: () => Promise<void>
}
type SdkConnect = (options: { bootstrap: string[], swarm: string, model?: string, tokenizer?: string, routeWaitMs?: number, signal?: AbortSignal }) => Promise<SdkClient>

/** How long the SDK may wait for the nodes' records to reach it and cover the model. */
const SAMPLE_ROUTE_WAIT_MS = 30_000

export async function sampleGeneration (r: SampleRequest): Promise<SampleResult> {
  const sdk = await import('../../client/index.ts') as unknown as { connect?: SdkConnect }
  if (typeof sdk.connect === 'function') return await viaSdk(sdk.connect, r)
  return await viaRunInference(r)
}

async function viaSdk (connect: SdkConnect, r: SampleRequest): Promise<SampleResult> {
  const client = await connect({
    bootstrap: r.bootstrap,
    swarm: r.swarm,
    ...(r.tokenizer !== undefined ? { tokenizer: r.tokenizer } : { model: r.model }),
    routeWaitMs: SAMPLE_ROUTE_WAIT_MS,
    ...(r.signal !== undefined ? { signal: r.signal } : {})
  })
  let tokens = 0
  let firstTokenAt = 0
  try {
    for await (const ev of client.generate({ prompt: r.prompt, maxTokens: r.maxTokens, temperature: 0, ...(r.signal !== undefined ? { signal: r.signal } : {}) })) {
      if (ev.type === 'token') {
        if (tokens++ === 0) firstTokenAt = performance.now()
        r.onText(ev.text ?? '')
      } else if (ev.type === 'done') {
        r.onText(ev.tail ?? '')
      }
    }
  } finally {
    await client.close()
  }
  return { tokens, via: 'sdk', firstTokenAt }
}

async function viaRunInference (r: SampleRequest): Promise<SampleResult> {
  const [{ noise }, { yamux }, { tcp }, { multiaddr }, { peerIdFromString }, { createLibp2p }, engine, protocols] = await Promise.all([
    import('@chainsafe/libp2p-noise'), import('@chainsafe/libp2p-yamux'), import('@libp2p/tcp'), import('@multiformats/multiaddr'),
    import('@libp2p/peer-id'), import('libp2p'), import('../../engine/index.ts'), import('../../protocols/index.ts')
  ])
  const source = await engine.openModel(r.model, r.tokenizer !== undefined ? { tokenizer: r.tokenizer } : {})
  const tokenizer = await engine.openTokenizer(source, r.tokenizer)
  const prompt = tokenizer.encode(r.prompt, { bos: true })
  const client = await createLibp2p({ transports: [tcp()], connectionEncrypters: [noise()], streamMuxers: [yamux()] })
  let tokens = 0
  let firstTokenAt = 0
  try {
    for (const hop of r.chain) await client.dial(multiaddr(hop.addr), r.signal !== undefined ? { signal: r.signal } : {})
    const open = async (peer: ChainHop['peer'], protocol: string, o: { signal?: AbortSignal }): Promise<Stream> =>
      await client.dialProtocol(typeof peer === 'string' ? peerIdFromString(peer) : peer, protocol, o)
    const text = engine.createTextStream(tokenizer)
    let prev = prompt[prompt.length - 1]
    const maxLength = Math.min(source.config.seqLen, prompt.length + r.maxTokens)
    for await (const ev of protocols.runInference(open, protocols.inferenceProtocol(r.swarm), { chain: r.chain.map(({ peer, start, end }) => ({ peer, start, end })), prompt, maxLength, ...(r.signal !== undefined ? { signal: r.signal } : {}) })) {
      if (ev.type !== 'token') continue
      if (tokens++ === 0) firstTokenAt = performance.now()
      r.onText(text.push(prev, ev.id))
      prev = ev.id
    }
    r.onText(text.flush())
  } finally {
    await client.stop()
  }
  return { tokens, via: 'runInference', firstTokenAt }
}
