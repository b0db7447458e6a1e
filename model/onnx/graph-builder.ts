import onnxProto from 'onnx-proto'

const { onnx } = onnxProto
const { DataType } = onnx.TensorProto
const { AttributeType } = onnx.AttributeProto

export type ElemType = 'float32' | 'int64' | 'bool'
export type Dim = number | string
export type AttrValue = number | number[] | string | { float: number }

const ELEM_TYPE: Record<ElemType, number> = {
  float32: DataType.FLOAT,
  int64: DataType.INT64,
  bool: DataType.BOOL
}

/**
 * The ONNX opset a graph imports by default (ORT's contrib domain comes with every graph).
 * Block graphs ask for 23 (llama-block.ts: Attention and RotaryEmbedding).
 */
const DEFAULT_OPSET = 17

/**
 * A small, explicit ONNX graph writer: named values in, nodes appended in order,
 * initializers stored as raw little-endian bytes. Names are made unique with a counter
 * so that emitting code can stay free of bookkeeping.
 */
export class GraphBuilder {
  readonly #nodes: onnxProto.onnx.INodeProto[] = []
  readonly #initializers: onnxProto.onnx.ITensorProto[] = []
  readonly #inputs: onnxProto.onnx.IValueInfoProto[] = []
  readonly #outputs: onnxProto.onnx.IValueInfoProto[] = []
  readonly #constants = new Map<string, string>()
  readonly #opset: number
  #counter = 0

  constructor ({ opset = DEFAULT_OPSET }: { opset?: number } = {}) {
    this.#opset = opset
  }

  /** A fresh value name with a readable prefix. */
  name (prefix: string): string {
    return `${prefix}_${this.#counter++}`
  }

  input (name: string, type: ElemType, dims: readonly Dim[]): string {
    this.#inputs.push(valueInfo(name, type, dims))
    return name
  }

  output (name: string, type: ElemType, dims: readonly Dim[]): void {
    this.#outputs.push(valueInfo(name, type, dims))
  }

  /** A float32 initializer; `data` is referenced, not copied, until `build()`. */
  floats (prefix: string, data: Float32Array, dims: readonly number[]): string {
    const name = this.name(prefix)
    this.#initializers.push({
      name,
      dataType: DataType.FLOAT,
      dims: [...dims],
      rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
    })
    return name
  }

  /** A uint8 initializer (packed quantized weights); `data` is referenced, not copied, until `build()`. */
  bytes (prefix: string, data: Uint8Array, dims: readonly number[]): string {
    const name = this.name(prefix)
    this.#initializers.push({ name, dataType: DataType.UINT8, dims: [...dims], rawData: data })
    return name
  }

  /** An int64 initializer (shapes, axes, split sizes); identical ones are shared. */
  ints (values: readonly number[], dims: readonly number[] = [values.length]): string {
    const key = `i64:${dims.join('x')}:${values.join(',')}`
    const known = this.#constants.get(key)
    if (known !== undefined) return known
    const name = this.name('const')
    const data = BigInt64Array.from(values, v => BigInt(v))
    this.#initializers.push({ name, dataType: DataType.INT64, dims: [...dims], rawData: new Uint8Array(data.buffer) })
    this.#constants.set(key, name)
    return name
  }

  /** A float32 scalar constant; identical ones are shared. */
  scalar (value: number): string {
    const key = `f32:${value}`
    const known = this.#constants.get(key)
    if (known !== undefined) return known
    const name = this.floats('scalar', Float32Array.of(value), [])
    this.#constants.set(key, name)
    return name
  }

  /** Appends a node with one output and returns the output's name. */
  op (opType: string, inputs: readonly string[], attrs: Record<string, AttrValue> = {}, domain = ''): string {
    return this.opN(opType, inputs, 1, attrs, domain)[0] as string
  }

  /** Appends a node with `outputs` outputs. */
  opN (opType: string, inputs: readonly string[], outputs: number, attrs: Record<string, AttrValue> = {}, domain = ''): string[] {
    const outs = Array.from({ length: outputs }, () => this.name(opType.toLowerCase()))
    this.#nodes.push({
      opType,
      domain,
      input: [...inputs],
      output: outs,
      name: this.name(`n_${opType}`),
      attribute: Object.entries(attrs).map(([name, v]) => attribute(name, v))
    })
    return outs
  }

  /**
   * Gives an existing value a fixed name (graph outputs need stable names). A node's output is
   * renamed where it is made and wherever it is read, so no Identity node is left to run (on
   * the WebGPU EP each node costs a dispatch); inputs and initializers get an Identity.
   */
  rename (value: string, name: string): void {
    const producer = this.#nodes.find(n => n.output?.includes(value) === true)
    if (producer === undefined) {
      this.#nodes.push({ opType: 'Identity', domain: '', input: [value], output: [name], name: this.name('n_Identity') })
      return
    }
    for (const node of this.#nodes) {
      node.input = node.input?.map(v => v === value ? name : v) ?? null
      node.output = node.output?.map(v => v === value ? name : v) ?? null
    }
  }

  /** Serializes the model; initializer bytes are copied into the protobuf here. */
  build (graphName: string): Uint8Array {
    const model = onnx.ModelProto.create({
      irVersion: this.#opset >= 21 ? 10 : 8, // opset 21+ needs IR 10
      producerName: 'petal',
      opsetImport: [{ domain: '', version: this.#opset }, { domain: 'com.microsoft', version: 1 }],
      graph: {
        name: graphName,
        node: this.#nodes,
        initializer: this.#initializers,
        input: this.#inputs,
        output: this.#outputs
      }
    })
    return onnx.ModelProto.encode(model).finish()
  }
}

function valueInfo (name: string, type: ElemType, dims: readonly Dim[]): onnxProto.onnx.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType: ELEM_TYPE[type],
        shape: { dim: dims.map(d => typeof d === 'number' ? { dimValue: d } : { dimParam: d }) }
      }
    }
  }
}

function attribute (name: string, v: AttrValue): onnxProto.onnx.IAttributeProto {
  if (typeof v === 'number') return { name, type: AttributeType.INT, i: v }
  if (typeof v === 'string') return { name, type: AttributeType.STRING, s: new TextEncoder().encode(v) }
  if (Array.isArray(v)) return { name, type: AttributeType.INTS, ints: v }
  return { name, type: AttributeType.FLOAT, f: v.float }
}
