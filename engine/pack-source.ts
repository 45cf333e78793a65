// Packing one tensor from its file into engine memory in the held dtype (see Matrix in index.ts).
// The general path reads f32 rows a chunk at a time (tensor-reader.ts) and quantizes them
// (quantize.ts), so the whole f32 matrix never sits in memory.
import type { EngineMemory, Matrix, TensorRef, WeightDType } from './index.ts'
import type { TensorReader } from './formats/tensor-reader.ts'
import { packMatrix } from './quantize.ts'

export function packTensor (mem: EngineMemory, dtype: WeightDType, ref: TensorRef, reader: TensorReader): Matrix {
  const [rows, cols] = ref.shape
  return packMatrix(mem, dtype, rows, cols, (rowStart, rowCount, out) => reader.readRows(ref, rowStart, rowCount, out))
}
