/**
 * Packs Hugging Face Linear weights, stored (out, in), into the (in, out) layout that
 * `MatMul(x, W)` wants, concatenating several projections along `out` so that one
 * MatMul computes them all (q|k|v, gate|up).
 *
 * parts[i] (out_i, in) -> packed (in, sum(out_i))
 */
export function packTransposed (parts: readonly Float32Array[], inDim: number): Float32Array {
  const outDims = parts.map(p => {
    if (p.length % inDim !== 0) throw new Error(`Cannot pack weight of ${p.length} elements: not a multiple of in=${inDim}`)
    return p.length / inDim
  })
  const total = outDims.reduce((a, b) => a + b, 0)
  const packed = new Float32Array(inDim * total)
  let col = 0
  parts.forEach((w, i) => {
    transposeInto(w, outDims[i] as number, inDim, packed, total, col)
    col += outDims[i] as number
  })
  return packed
}

const TILE = 32

/** src (rows, cols) -> dst[c * dstStride + dstCol + r]; tiled so both sides stay in cache. */
function transposeInto (src: Float32Array, rows: number, cols: number, dst: Float32Array, dstStride: number, dstCol: number): void {
  for (let r0 = 0; r0 < rows; r0 += TILE) {
    const r1 = Math.min(r0 + TILE, rows)
    for (let c0 = 0; c0 < cols; c0 += TILE) {
      const c1 = Math.min(c0 + TILE, cols)
      for (let r = r0; r < r1; r++) {
        const srcRow = r * cols
        const dstBase = dstCol + r
        for (let c = c0; c < c1; c++) dst[c * dstStride + dstBase] = src[srcRow + c] as number
      }
    }
  }
}
