// Bulk transfer protocol (`/mycelium/<swarm>/bulk/1.0.0`): a stand-in for tensor traffic that
// measures a path end to end. It carries payload bytes, so it never runs on a limited (relayed
// with data/duration caps) connection. Grammar in README.md.
//
//   dialer   → lp(BulkRequest{size}) raw-bytes{size} <close write>
//   listener → lp(BulkResponse{status, received})
//
// The listener checks `size` against its limit before it reads a payload byte, counts and drops
// the payload (memory stays at one chunk per stream), and answers with a status, never a trace.
import { pbStream } from '@libp2p/utils'
import type { AbortOptions, ComponentLogger, Logger, Startable, Stream } from '@libp2p/interface'
import { BulkRequest, BulkResponse } from './bulk.pb.js'
import {
  BULK_CHUNK_BYTES, BULK_HANDLER_TIMEOUT_MS, BULK_REPLY_TIMEOUT_MS, BULK_MAX_FRAME_BYTES, BULK_MAX_INBOUND_STREAMS,
  BULK_MAX_TRANSFER_BYTES, DEFAULT_SWARM
} from './constants.ts'
import { TransferFailedError } from './errors.ts'
import { protocolId } from './swarm.ts'

export { BulkRequest, BulkResponse }

/** The bulk protocol id of a swarm. */
export function bulkProtocol (swarm: string = DEFAULT_SWARM): string {
  return protocolId(swarm, 'bulk', '1.0.0')
}

export interface BulkReceiveOptions extends AbortOptions {
  /** Largest transfer accepted (default BULK_MAX_TRANSFER_BYTES). */
  maxTransferBytes?: number
  /** Deadline for the whole transfer (default BULK_HANDLER_TIMEOUT_MS). */
  timeoutMs?: number
}

export interface BulkReceiveResult {
  status: BulkResponse.Status
  received: number
}

/** Serves one inbound bulk stream: validates the header, counts the payload, answers. */
export async function receiveBulk (stream: Stream, options: BulkReceiveOptions = {}): Promise<BulkReceiveResult> {
  const maxBytes = options.maxTransferBytes ?? BULK_MAX_TRANSFER_BYTES
  const deadline = AbortSignal.timeout(options.timeoutMs ?? BULK_HANDLER_TIMEOUT_MS)
  const signal = options.signal == null ? deadline : AbortSignal.any([deadline, options.signal])
  const pb = pbStream(stream, { maxDataLength: BULK_MAX_FRAME_BYTES })
  let unwrapped = false
  const answer = async (status: BulkResponse.Status, received: number): Promise<BulkReceiveResult> => {
    if (!unwrapped) pb.unwrap()
    unwrapped = true
    // The reply gets its own short deadline: the transfer's may be what just expired.
    const replySignal = AbortSignal.timeout(BULK_REPLY_TIMEOUT_MS)
    await pbStream(stream, { maxDataLength: BULK_MAX_FRAME_BYTES }).write({ status, received }, BulkResponse, { signal: replySignal })
    await stream.close({ signal: replySignal })
    return { status, received }
  }
  let size: number
  try {
    const request = await pb.read(BulkRequest, { signal })
    size = request.size
  } catch (err) {
    if (signal.aborted) throw err
    return await answer(BulkResponse.Status.MALFORMED, 0)
  }
  if (size > maxBytes) return await answer(BulkResponse.Status.TOO_LARGE, 0)
  const raw = pb.unwrap()
  unwrapped = true
  let received = 0
  // Race every read against the deadline: a stalled sender must not hold the handler forever.
  const aborted = new Promise<'aborted'>((resolve) => {
    if (signal.aborted) resolve('aborted')
    signal.addEventListener('abort', () => { resolve('aborted') }, { once: true })
  })
  const chunks = raw[Symbol.asyncIterator]()
  try {
    for (;;) {
      const next = await Promise.race([chunks.next(), aborted])
      if (next === 'aborted' || next.done === true) break
      received += next.value.byteLength
      if (received > size) return await answer(BulkResponse.Status.MALFORMED, received)
    }
  } catch (err) {
    if (!signal.aborted) throw err
  }
  if (signal.aborted) return await answer(BulkResponse.Status.TIMEOUT, received)
  return await answer(received === size ? BulkResponse.Status.OK : BulkResponse.Status.SHORT, received)
}

export interface BulkSendResult {
  bytes: number
  ms: number
}

/** Sends `size` bytes over a freshly opened bulk stream and waits for the receiver's verdict. */
export async function sendBulk (stream: Stream, size: number, options: AbortOptions = {}): Promise<BulkSendResult> {
  const started = performance.now()
  const pb = pbStream(stream, { maxDataLength: BULK_MAX_FRAME_BYTES })
  await pb.write({ size }, BulkRequest, options)
  const raw = pb.unwrap()
  const chunk = new Uint8Array(BULK_CHUNK_BYTES)
  let sent = 0
  while (sent < size) {
    const n = Math.min(chunk.byteLength, size - sent)
    if (!raw.send(n === chunk.byteLength ? chunk : chunk.subarray(0, n))) await raw.onDrain(options)
    sent += n
  }
  await raw.close(options)
  const reply = await pbStream(raw, { maxDataLength: BULK_MAX_FRAME_BYTES }).read(BulkResponse, options)
  if (reply.status !== BulkResponse.Status.OK) {
    throw new TransferFailedError(`bulk transfer refused: ${reply.status} after ${reply.received} of ${size} bytes`)
  }
  return { bytes: size, ms: performance.now() - started }
}

export interface BulkTransferInit {
  /** Swarm whose protocol id is served (default DEFAULT_SWARM). */
  swarm?: string
  /** Largest accepted transfer (default BULK_MAX_TRANSFER_BYTES). */
  maxTransferBytes?: number
  /** Deadline per inbound transfer (default BULK_HANDLER_TIMEOUT_MS). */
  handlerTimeoutMs?: number
  /** Concurrent inbound streams per connection (default BULK_MAX_INBOUND_STREAMS). */
  maxInboundStreams?: number
}

/** The part of libp2p's registrar the service uses. */
export interface BulkRegistrar {
  handle: (protocol: string, handler: (stream: Stream) => Promise<void>, options: { maxInboundStreams: number, runOnLimitedConnection: boolean }) => Promise<void>
  unhandle: (protocol: string) => Promise<void>
}

export interface BulkTransferComponents {
  registrar: BulkRegistrar
  logger: ComponentLogger
}

/** Serves the bulk protocol; keeps counters the daemon reports. */
export class BulkTransferService implements Startable {
  readonly protocol: string
  readonly stats = { transfers: 0, refused: 0, bytes: 0 }
  private readonly components: BulkTransferComponents
  private readonly init: BulkTransferInit
  private readonly log: Logger
  private shutdown = new AbortController()

  constructor (components: BulkTransferComponents, init: BulkTransferInit = {}) {
    this.components = components
    this.init = init
    this.protocol = bulkProtocol(init.swarm)
    this.log = components.logger.forComponent('mycelium:protocols:bulk')
  }

  async start (): Promise<void> {
    this.shutdown = new AbortController()
    await this.components.registrar.handle(this.protocol, async (stream) => {
      const result = await receiveBulk(stream, {
        maxTransferBytes: this.init.maxTransferBytes,
        timeoutMs: this.init.handlerTimeoutMs,
        signal: this.shutdown.signal
      })
      if (result.status === BulkResponse.Status.OK) {
        this.stats.transfers++
        this.stats.bytes += result.received
      } else {
        this.stats.refused++
        this.log('refused bulk transfer: %s after %d bytes', result.status, result.received)
      }
    }, {
      maxInboundStreams: this.init.maxInboundStreams ?? BULK_MAX_INBOUND_STREAMS,
      // Payload protocol: never over a relayed circuit that has data or duration limits.
      runOnLimitedConnection: false
    })
  }

  async stop (): Promise<void> {
    this.shutdown.abort()
    await this.components.registrar.unhandle(this.protocol)
  }
}

/** libp2p service factory for the bulk protocol. */
export function bulkTransfer (init: BulkTransferInit = {}): (components: BulkTransferComponents) => BulkTransferService {
  return (components) => new BulkTransferService(components, init)
}
