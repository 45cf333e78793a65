// A kernel thread: instantiates kernels.wasm over the shared memory, gives the instance its own
// shadow-stack region, says it is ready, then serves jobs until the pool stops it.
import { parentPort, workerData } from 'node:worker_threads'
import { bindKernels, serveJobs, type KernelExports, type WorkerData } from './worker-pool.ts'

const data = workerData as WorkerData
const instance = new WebAssembly.Instance(data.module, { env: { memory: data.memory } })
const exports = instance.exports as unknown as KernelExports
exports.__stack_pointer.value = data.stackTop
parentPort?.postMessage('ready')
serveJobs(bindKernels(exports), data)
