// The two ends of one /mycelium/sync/1 stream. The puller sends its heads; the responder answers
// with the runs that follow them (compressed, bounded) and `more` when it had to stop early; the
// puller applies them and asks again until nothing is missing or the round limit is reached.
// The first reply also carries the responder's live presence beacons (unless the puller's digest
// of its own says it holds the same), so a node that connects learns who is online at once.
//
//   puller → SyncRequest { swarm, heads[], maxBytes, excluded[], presence }
//   responder → SyncReply { status, runs = deflateRaw(RunBatch { runs[] }), more, forks[], beacons[] }
//   ... repeated while `more` (at most SYNC_MAX_ROUNDS), then the puller closes.
import { deflateRawSync, inflateRawSync } from 'node:zlib'
import { pbStream } from '@libp2p/utils'
import { decodeBeacon, decodeForkProof, decodeRun, encodeBeacon, encodeForkProof, encodeRun, type SwarmState, type WriterHead } from '../../crdt/index.ts'
import {
  SYNC_HEAD_HASH_BYTES, SYNC_MAX_BEACONS, SYNC_MAX_FRAME_BYTES, SYNC_MAX_HEADS, SYNC_MAX_INFLATED_BYTES, SYNC_MAX_ROUNDS
} from './constants.ts'
import { SyncFailedError } from './errors.ts'
import { RunBatch, SyncReply, SyncRequest } from './sync.pb.js'
import type { AbortOptions, Stream } from '@libp2p/interface'

export interface SyncTraffic { bytesIn: number, bytesOut: number }

export interface PullResult extends SyncTraffic {
  /** Compressed run bytes received, and the same after decompression. */
  runBytesIn: number
  rawBytesIn: number
  /** Envelopes added to the state. */
  applied: number
  /** Runs refused (bad signature, forks, rule violations). */
  rejected: number
  /** Beacons taken (newer than what we held). */
  beacons: number
  rounds: number
}

function encodeHeads (heads: WriterHead[]): SyncRequest['heads'] {
  return heads.map((h) => ({ clientId: h.clientId, seq: h.seq, hash: h.hash.subarray(0, SYNC_HEAD_HASH_BYTES) as Uint8Array<ArrayBuffer> }))
}

/** Pulls what `peer` has and we lack over an open stream; closes the stream when done. */
export async function pullOver (stream: Stream, state: SwarmState, peer: string, maxBytes: number, options: AbortOptions = {}): Promise<PullResult> {
  const pb = pbStream(stream, { maxDataLength: SYNC_MAX_FRAME_BYTES })
  const result: PullResult = { applied: 0, rejected: 0, beacons: 0, rounds: 0, bytesIn: 0, bytesOut: 0, runBytesIn: 0, rawBytesIn: 0 }
  for (let more = true; more && result.rounds < SYNC_MAX_ROUNDS;) {
    const request: SyncRequest = {
      swarm: state.swarm, heads: encodeHeads(state.heads()), maxBytes, excluded: state.excludedClientIds(), presence: state.presenceDigest() as Uint8Array<ArrayBuffer>
    }
    result.bytesOut += SyncRequest.encode(request).length
    await pb.write(request, SyncRequest, options)
    const reply = await pb.read(SyncReply, { ...options, limits: { forks: SYNC_MAX_HEADS, beacons: SYNC_MAX_BEACONS } })
    result.bytesIn += SyncReply.encode(reply).length
    result.rounds++
    if (reply.status !== SyncReply.Status.OK) throw new SyncFailedError(`sync refused by ${peer}: ${reply.status}`)
    let batch: RunBatch
    try {
      const raw = reply.runs.length === 0 ? reply.runs : inflateRawSync(reply.runs, { maxOutputLength: SYNC_MAX_INFLATED_BYTES })
      result.runBytesIn += reply.runs.length
      result.rawBytesIn += raw.length
      batch = RunBatch.decode(raw)
    } catch (err) {
      throw new SyncFailedError(`sync reply from ${peer} does not decode`, { cause: err })
    }
    // Fork proofs first: a writer proven to equivocate is refused before its runs are read.
    for (const bytes of reply.forks) state.receiveForkProof(decodeForkProof(bytes), peer)
    // Relayed beacons need no publisher check: each is signed, and counts from its own timestamp.
    for (const bytes of reply.beacons) if (state.receiveBeacon(decodeBeacon(bytes), peer).status === 'accepted') result.beacons++
    let progress = 0
    for (const bytes of batch.runs) {
      const outcome = state.receiveRun(decodeRun(bytes), peer)
      if (outcome.status === 'accepted') progress += outcome.applied
      else if (outcome.status === 'rejected') result.rejected++
    }
    result.applied += progress
    more = reply.more && progress > 0
  }
  await stream.close(options)
  return result
}

/** Answers sync requests on an inbound stream until the puller closes it; replies carry at most `maxReplyBytes` of updates. */
export async function serveOver (stream: Stream, state: SwarmState, allow: () => boolean, maxReplyBytes: number, options: AbortOptions = {}): Promise<SyncTraffic> {
  const pb = pbStream(stream, { maxDataLength: SYNC_MAX_FRAME_BYTES })
  const traffic: SyncTraffic = { bytesIn: 0, bytesOut: 0 }
  for (let round = 0; round < SYNC_MAX_ROUNDS; round++) {
    let request: SyncRequest
    try {
      request = await pb.read(SyncRequest, { ...options, limits: { heads: SYNC_MAX_HEADS, excluded: SYNC_MAX_HEADS } })
    } catch (err) {
      if (options.signal?.aborted === true) throw err
      break // the puller closed the stream (or sent garbage): either way this exchange is over
    }
    traffic.bytesIn += SyncRequest.encode(request).length
    let reply: SyncReply
    if (request.swarm !== state.swarm) reply = { status: SyncReply.Status.WRONG_SWARM, runs: new Uint8Array(0), more: false, forks: [], beacons: [] }
    else if (!allow()) reply = { status: SyncReply.Status.RATE_LIMITED, runs: new Uint8Array(0), more: false, forks: [], beacons: [] }
    else {
      // Beacons (≤ SYNC_MAX_BEACONS, ≈150 bytes each) go once per stream, unless the puller holds
      // the same ones (same digest), and come out of the update budget, so the frame stays bounded.
      const sendBeacons = round === 0 && Buffer.compare(Buffer.from(request.presence), Buffer.from(state.presenceDigest())) !== 0
      const beacons = sendBeacons ? state.liveBeacons().slice(0, SYNC_MAX_BEACONS).map((b) => encodeBeacon(b) as Uint8Array<ArrayBuffer>) : []
      const beaconBytes = beacons.reduce((n, b) => n + b.length, 0)
      const heads = request.heads.map((h) => ({ clientId: h.clientId, seq: h.seq, hash: h.hash }))
      const { runs, more } = state.runsFor(heads, Math.max(1, Math.min(request.maxBytes, maxReplyBytes) - beaconBytes))
      const batch = RunBatch.encode({ runs: runs.map((r) => encodeRun(r) as Uint8Array<ArrayBuffer>) })
      const forks = state.forkProofsExcept(request.excluded).map((p) => encodeForkProof(p) as Uint8Array<ArrayBuffer>)
      reply = { status: SyncReply.Status.OK, runs: runs.length === 0 ? new Uint8Array(0) : deflateRawSync(batch), more, forks, beacons }
    }
    traffic.bytesOut += SyncReply.encode(reply).length
    await pb.write(reply, SyncReply, options)
    if (reply.status !== SyncReply.Status.OK) break
  }
  await stream.close(options)
  return traffic
}
