// Memory bandwidth of this machine, the physical limit of batch-1 decode: every weight byte is read
// once per token, so tokens/s can never exceed bandwidth ÷ weight bytes per token.
// Primary method: a read-only sum over a 1 GiB f32 buffer in C (gcc/cc -O3 -march=native
// -ffast-math -fopenmp), compiled into a temp dir at run time; pages are written (touched) by the
// same threads before timing, so no read hits the kernel's shared zero page. Best of several passes.
// Fallback when no C compiler works: the same sum in JavaScript over a SharedArrayBuffer with
// worker_threads. JS is element-rate bound (≈ 2.4 G elem/s per core, executor probe §0), so the
// fallback UNDER-estimates bandwidth and therefore over-states % of roofline: it is labelled.
import { execFileSync, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Worker } from 'node:worker_threads'

export interface BandwidthResult {
  method: 'c-openmp' | 'js-fallback'
  /** Why the C method was not used, when it was not. */
  note?: string
  bufferBytes: number
  /** GB/s (1e9 bytes per second) per thread count. */
  gbps: Record<number, number>
}

export interface BandwidthOptions {
  threads: number[]
  bufferBytes?: number
  passes?: number
  /** Fresh processes per thread count; the best is kept (default 3). */
  rounds?: number
  /** Skip the C method (to test the fallback, or where compiling is unwanted). */
  jsOnly?: boolean
}

const DEFAULT_BUFFER_BYTES = 1 << 30
const DEFAULT_PASSES = 12
const ROUNDS = 3
const JS_BUFFER_BYTES = 512 * 1024 * 1024 // the JS fallback is slower per pass; half the buffer

const C_SOURCE = String.raw`
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
int main (int argc, char **argv) {
  size_t bytes = strtoull(argv[1], 0, 10);
  int passes = atoi(argv[2]);
  size_t n = bytes / sizeof(float);
  float *a = aligned_alloc(64, n * sizeof(float));
  if (!a) { fprintf(stderr, "alloc failed\n"); return 1; }
  #pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; i++) a[i] = (float)(i & 1023) * 0.001f;
  double best = 1e30, sink = 0;
  for (int p = 0; p < passes; p++) {
    double t0 = omp_get_wtime();
    float s = 0;
    #pragma omp parallel for reduction(+:s) schedule(static)
    for (size_t i = 0; i < n; i++) s += a[i];
    double t = omp_get_wtime() - t0;
    sink += s;
    if (t < best) best = t;
  }
  printf("%.4f %d %g\n", (double)bytes / best / 1e9, omp_get_max_threads(), sink);
  return 0;
}
`

/** Measures read bandwidth for each thread count; never throws for a missing compiler. */
export async function measureBandwidth (options: BandwidthOptions): Promise<BandwidthResult> {
  const bufferBytes = options.bufferBytes ?? DEFAULT_BUFFER_BYTES
  const passes = options.passes ?? DEFAULT_PASSES
  const dir = mkdtempSync(join(tmpdir(), 'mycelium-bw-'))
  try {
    const exe = options.jsOnly === true ? { error: 'C method skipped (jsOnly)' } : compile(dir)
    if (typeof exe !== 'string') {
      return { method: 'js-fallback', note: exe.error, bufferBytes: JS_BUFFER_BYTES, gbps: await jsBandwidth(options.threads, passes) }
    }
    // Bandwidth is a ceiling: best of `rounds` fresh processes (on a VM the figure moves between
    // processes), alternating thread counts so a busy moment hits them alike.
    const gbps: Record<number, number> = {}
    for (let round = 0; round < (options.rounds ?? ROUNDS); round++) {
      for (const t of options.threads) {
        const out = execFileSync(exe, [String(bufferBytes), String(passes)], {
          encoding: 'utf8',
          env: { ...process.env, OMP_NUM_THREADS: String(t), OMP_PROC_BIND: 'spread', OMP_PLACES: 'cores' }
        })
        gbps[t] = Math.max(gbps[t] ?? 0, Number(out.trim().split(/\s+/)[0]))
      }
    }
    return { method: 'c-openmp', bufferBytes, gbps }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

function compile (dir: string): string | { error: string } {
  const src = join(dir, 'bw.c')
  const exe = join(dir, 'bw')
  writeFileSync(src, C_SOURCE)
  const errors: string[] = []
  for (const cc of [process.env.CC ?? 'cc', 'gcc', 'clang']) {
    const r = spawnSync(cc, ['-O3', '-march=native', '-ffast-math', '-fopenmp', '-o', exe, src], { encoding: 'utf8' })
    if (r.status === 0) return exe
    errors.push(`${cc}: ${r.error?.message ?? r.stderr.trim().split('\n')[0]}`)
  }
  return { error: `no working C compiler with OpenMP (${errors.join('; ')})` }
}

// The JS fallback: each worker sums its slice of one shared Float64Array with 8 accumulators.
const JS_WORKER = `
const { parentPort, workerData } = require('node:worker_threads')
const { sab, from, to, passes, control } = workerData
const a = new Float64Array(sab, from * 8, to - from)
for (let i = 0; i < a.length; i++) a[i] = (i & 1023) * 0.001
const ctl = new Int32Array(control)
let sink = 0
parentPort.postMessage('ready')
for (let p = 0; p < passes; p++) {
  Atomics.wait(ctl, 0, p)
  let s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0
  for (let i = 0; i + 8 <= a.length; i += 8) {
    s0 += a[i]; s1 += a[i + 1]; s2 += a[i + 2]; s3 += a[i + 3]
    s4 += a[i + 4]; s5 += a[i + 5]; s6 += a[i + 6]; s7 += a[i + 7]
  }
  sink += s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7
  parentPort.postMessage('done')
}
parentPort.postMessage({ sink })
`

async function jsBandwidth (threadCounts: number[], passes: number): Promise<Record<number, number>> {
  const gbps: Record<number, number> = {}
  for (const t of threadCounts) gbps[t] = await jsBandwidthFor(t, passes)
  return gbps
}

async function jsBandwidthFor (threads: number, passes: number): Promise<number> {
  const n = JS_BUFFER_BYTES / 8
  const sab = new SharedArrayBuffer(JS_BUFFER_BYTES)
  const control = new SharedArrayBuffer(4)
  const ctl = new Int32Array(control)
  const per = Math.ceil(n / threads)
  const workers = Array.from({ length: threads }, (_, i) => new Worker(JS_WORKER, {
    eval: true,
    workerData: { sab, from: i * per, to: Math.min(n, (i + 1) * per), passes, control }
  }))
  const next = (w: Worker) => once(w, 'message') // rejects on the worker's 'error'
  try {
    await Promise.all(workers.map(next))
    let best = Infinity
    for (let p = 0; p < passes; p++) {
      const done = Promise.all(workers.map(next))
      const t0 = performance.now()
      Atomics.store(ctl, 0, p + 1)
      Atomics.notify(ctl, 0)
      await done
      best = Math.min(best, (performance.now() - t0) / 1000)
    }
    return JS_BUFFER_BYTES / best / 1e9
  } finally {
    await Promise.all(workers.map((w) => w.terminate()))
  }
}
