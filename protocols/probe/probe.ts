// The probe exchange over one stream (`/mycelium/probe/1`; grammar in README.md):
//
//   prober   → lp(ProbeRequest{seq, payload, reply_bytes})   … up to PROBE_MAX_REQUESTS_PER_STREAM
//   listener → lp(ProbeResponse{status, seq, payload[reply_bytes]})
//
// The listener bounds the frame before decoding it (lp max length) and checks payload and
// reply_bytes against its limit before allocating the reply; garbage and oversize requests get a
// status (MALFORMED / TOO_LARGE) and the stream is closed, never a trace.
import { pbStream } from '@libp2p/utils'
import type { AbortOptions, Stream } from '@libp2p/interface'
import { ProbeRequest, ProbeResponse } from './probe.pb.js'
import { PROBE_BULK_BYTES, PROBE_HANDLER_TIMEOUT_MS, PROBE_MAX_FRAME_BYTES, PROBE_MAX_PAYLOAD_BYTES, PROBE_MAX_REQUESTS_PER_STREAM, PROBE_PINGS } from './constants.ts'
import { ProbeFailedError } from './errors.ts'

export { ProbeRequest, ProbeResponse }

export interface ServeProbeOptions extends AbortOptions {
  /** Largest payload accepted and reply sent (default PROBE_MAX_PAYLOAD_BYTES). */
  maxPayloadBytes?: number
  /** Deadline for the whole stream (default PROBE_HANDLER_TIMEOUT_MS). */
  timeoutMs?: number
  /** Requests served before closing (default PROBE_MAX_REQUESTS_PER_STREAM). */
  maxRequests?: number
}

/** How a served stream ended: after `requests` answered requests, with the last status. */
export interface ServeProbeResult {
  requests: number
  status: ProbeResponse.Status | 'CLOSED' | 'TIMEOUT'
}

/** Serves one inbound probe stream. Never throws for bad input: the result names it. */
export async function serveProbe (stream: Stream, options: ServeProbeOptions = {}): Promise<ServeProbeResult> {
  const max = options.maxPayloadBytes ?? PROBE_MAX_PAYLOAD_BYTES
  const deadline = AbortSignal.timeout(options.timeoutMs ?? PROBE_HANDLER_TIMEOUT_MS)
  const signal = options.signal == null ? deadline : AbortSignal.any([deadline, options.signal])
  const pb = pbStream(stream, { maxDataLength: Math.min(max, PROBE_MAX_PAYLOAD_BYTES) + (PROBE_MAX_FRAME_BYTES - PROBE_MAX_PAYLOAD_BYTES) })
  const refuse = async (status: ProbeResponse.Status, seq: number, requests: number): Promise<ServeProbeResult> => {
    try {
      await pb.write({ status, seq, payload: new Uint8Array(0) }, ProbeResponse, { signal: AbortSignal.timeout(1000) })
      await stream.close({ signal: AbortSignal.timeout(1000) })
    } catch (err) {
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    }
    return { requests, status }
  }
  let served = 0
  for (; served < (options.maxRequests ?? PROBE_MAX_REQUESTS_PER_STREAM); served++) {
    let req: ProbeRequest
    try {
      req = await pb.read(ProbeRequest, { signal })
    } catch (err) {
      const name = (err as Error).name
      if (signal.aborted) { stream.abort(new Error('probe deadline')); return { requests: served, status: 'TIMEOUT' } }
      if (name === 'UnexpectedEOFError') { // the prober closed its side: close ours
        await stream.close({ signal: AbortSignal.timeout(1000) }).catch((e: Error) => { stream.abort(e) })
        return { requests: served, status: 'CLOSED' }
      }
      if (name === 'InvalidDataLengthError' || name === 'InvalidDataLengthLengthError') return await refuse(ProbeResponse.Status.TOO_LARGE, 0, served)
      return await refuse(ProbeResponse.Status.MALFORMED, 0, served)
    }
    if (req.payload.byteLength > max || req.replyBytes > max) return await refuse(ProbeResponse.Status.TOO_LARGE, req.seq, served)
    try {
      await pb.write({ status: ProbeResponse.Status.OK, seq: req.seq, payload: new Uint8Array(req.replyBytes) }, ProbeResponse, { signal })
    } catch (err) {
      // the prober went away (or the deadline hit) before its answer: nothing left to serve
      stream.abort(err instanceof Error ? err : new Error(String(err)))
      return { requests: served, status: signal.aborted ? 'TIMEOUT' : 'CLOSED' }
    }
  }
  await stream.close({ signal })
  return { requests: served, status: ProbeResponse.Status.OK }
}

export interface ProbeOptions extends AbortOptions {
  /** Empty round trips for the RTT (default PROBE_PINGS); the minimum is kept. */
  pings?: number
  /** Bytes each way for the bandwidth round trip (default PROBE_BULK_BYTES; 0 skips it). */
  bulkBytes?: number
  /** Milliseconds clock (default performance.now). */
  clock?: () => number
}

/** What one probe measured. */
export interface ProbeMeasurement {
  /** Smallest empty round trip, ms. */
  rttMs: number
  /** Bytes per second over the bulk round trip (upload and download together), 0 if skipped. */
  bandwidthBytesPerS: number
}

/** Probes the peer at the other end of `stream`: pings for RTT, then one bulk round trip. */
export async function probeOver (stream: Stream, options: ProbeOptions = {}): Promise<ProbeMeasurement> {
  const clock = options.clock ?? (() => performance.now())
  const pb = pbStream(stream, { maxDataLength: PROBE_MAX_FRAME_BYTES })
  let seq = 0
  const roundTrip = async (payload: number, reply: number): Promise<number> => {
    const s = ++seq
    const t0 = clock()
    await pb.write({ seq: s, payload: new Uint8Array(payload), replyBytes: reply }, ProbeRequest, options)
    const res = await pb.read(ProbeResponse, options)
    const ms = clock() - t0
    if (res.status !== ProbeResponse.Status.OK) throw new ProbeFailedError(`probe refused: ${res.status}`)
    if (res.seq !== s || res.payload.byteLength !== reply) throw new ProbeFailedError(`probe reply does not match request ${s}`)
    return ms
  }
  try {
    let rttMs = Infinity
    for (let i = 0; i < Math.max(1, options.pings ?? PROBE_PINGS); i++) rttMs = Math.min(rttMs, await roundTrip(0, 0))
    const bulk = Math.min(options.bulkBytes ?? PROBE_BULK_BYTES, PROBE_MAX_PAYLOAD_BYTES)
    let bandwidthBytesPerS = 0
    if (bulk > 0) {
      const ms = await roundTrip(bulk, bulk)
      bandwidthBytesPerS = (2 * bulk) / (Math.max(ms - rttMs, 0.01) / 1000)
    }
    await stream.close(options)
    return { rttMs, bandwidthBytesPerS }
  } catch (err) {
    stream.abort(err instanceof Error ? err : new Error(String(err)))
    if (err instanceof ProbeFailedError) throw err
    throw new ProbeFailedError('probe failed', { cause: err })
  }
}
