import type { LlamaConfig } from './config.js'

/**
 * RoPE's inverse frequencies (D/2) of a config, as Hugging Face computes them: theta^(-2i/D),
 * then the config's scaling. A row at position p rotates pair i by the angle p * invFreq[i].
 *
 * llama3 (Llama 3.1+): a frequency whose wavelength 2π/f is shorter than
 * originalMaxPositions / highFreqFactor is kept, one longer than originalMaxPositions /
 * lowFreqFactor is divided by factor, and one in between is blended linearly in
 * originalMaxPositions / wavelength between the two.
 */
export function ropeInverseFrequencies (cfg: LlamaConfig): Float64Array {
  const half = cfg.headDim / 2
  const base = Float64Array.from({ length: half }, (_, i) => 1 / Math.pow(cfg.ropeTheta, (2 * i) / cfg.headDim))
  const scaling = cfg.ropeScaling
  switch (scaling.type) {
    case 'default': return base
    case 'linear': return base.map(f => f / scaling.factor)
    case 'llama3': {
      const { factor, lowFreqFactor, highFreqFactor, originalMaxPositions } = scaling
      const longest = originalMaxPositions / lowFreqFactor // wavelengths above: all scaled
      const shortest = originalMaxPositions / highFreqFactor // wavelengths below: kept
      return base.map(f => {
        const wavelength = 2 * Math.PI / f
        if (wavelength < shortest) return f
        if (wavelength > longest) return f / factor
        const smooth = (originalMaxPositions / wavelength - lowFreqFactor) / (highFreqFactor - lowFreqFactor)
        return (1 - smooth) * f / factor + smooth * f
      })
    }
  }
}
