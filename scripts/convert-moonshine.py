#!/usr/bin/env python3
"""Moonshine's shipped ORT-format graphs (moonshine-cpp) rewritten as plain ONNX, once, at setup.

The `.ort` files keep their weights as 8-bit integers that a Cast and a Mul widen back to floats
inside the graph. ONNX Runtime does not constant-fold a model loaded in its own ORT format, so
those casts and multiplications ran on every call: on this machine they took about four fifths
of each decoder step. Written out as ONNX, the same graph is folded when the session loads (the
weights are widened once), and every later run does only the model's own arithmetic. Nothing is
re-quantised or approximated: the folded weights are the very products the graph computed per
call, so the transcripts are the same.

The ORT format is read with the flatbuffer bindings that ship inside the onnxruntime wheel; the
ONNX model is built with the `onnx` package. Usage: convert-moonshine.py IN.ort OUT.onnx
"""

import sys

import onnx
from onnx import helper, TensorProto
from onnxruntime.tools.ort_format_model.ort_flatbuffers_py import fbs


def text(b):
    return b.decode() if b is not None else ""


def tensor(t):
    """An ORT-format tensor as an ONNX TensorProto (raw bytes, or strings)."""
    out = TensorProto()
    out.name = text(t.Name())
    out.data_type = t.DataType()
    out.dims.extend(t.Dims(j) for j in range(t.DimsLength()))
    if t.ExternalDataOffset() >= 0:
        sys.exit(f"tensor {out.name}: external data is not supported")
    if t.StringDataLength() > 0:
        out.string_data.extend(t.StringData(j) for j in range(t.StringDataLength()))
    elif t.RawDataLength() > 0:
        out.raw_data = t.RawDataAsNumpy().tobytes()
    return out


def value_info(v):
    info = onnx.ValueInfoProto()
    info.name = text(v.Name())
    ty = v.Type()
    if ty is None:
        return info
    if ty.ValueType() != fbs.TypeInfoValue.TypeInfoValue.tensor_type:
        sys.exit(f"value {info.name}: only tensor types are supported")
    tt = fbs.TensorTypeAndShape.TensorTypeAndShape()
    tt.Init(ty.Value().Bytes, ty.Value().Pos)
    info.type.tensor_type.elem_type = tt.ElemType()
    shape = tt.Shape()
    if shape is not None:
        dims = info.type.tensor_type.shape
        for j in range(shape.DimLength()):
            d = dims.dim.add()
            value = shape.Dim(j).Value()
            if value is None:
                continue
            if value.DimType() == fbs.DimensionValueType.DimensionValueType.VALUE:
                d.dim_value = value.DimValue()
            elif value.DimType() == fbs.DimensionValueType.DimensionValueType.PARAM:
                d.dim_param = text(value.DimParam())
    return info


def attribute(a):
    A = fbs.AttributeType.AttributeType
    kind = a.Type()
    name = text(a.Name())
    if kind == A.FLOAT:
        return helper.make_attribute(name, a.F())
    if kind == A.INT:
        return helper.make_attribute(name, a.I())
    if kind == A.STRING:
        return helper.make_attribute(name, a.S())
    if kind == A.TENSOR:
        return helper.make_attribute(name, tensor(a.T()))
    if kind == A.GRAPH:
        return helper.make_attribute(name, graph(a.G()))
    if kind == A.FLOATS:
        return helper.make_attribute(name, [a.Floats(j) for j in range(a.FloatsLength())], attr_type=onnx.AttributeProto.FLOATS)
    if kind == A.INTS:
        return helper.make_attribute(name, [a.Ints(j) for j in range(a.IntsLength())], attr_type=onnx.AttributeProto.INTS)
    if kind == A.STRINGS:
        return helper.make_attribute(name, [a.Strings(j) for j in range(a.StringsLength())], attr_type=onnx.AttributeProto.STRINGS)
    if kind == A.TENSORS:
        return helper.make_attribute(name, [tensor(a.Tensors(j)) for j in range(a.TensorsLength())])
    if kind == A.GRAPHS:
        return helper.make_attribute(name, [graph(a.Graphs(j)) for j in range(a.GraphsLength())])
    sys.exit(f"attribute {name}: type {kind} is not supported")


def graph(g):
    out = onnx.GraphProto()
    out.name = "main"
    if g.SparseInitializersLength() > 0:
        sys.exit("sparse initializers are not supported")
    out.initializer.extend(tensor(g.Initializers(j)) for j in range(g.InitializersLength()))
    infos = {}
    for j in range(g.NodeArgsLength()):
        info = value_info(g.NodeArgs(j))
        infos[info.name] = info
    inputs = [text(g.Inputs(j)) for j in range(g.InputsLength())]
    outputs = [text(g.Outputs(j)) for j in range(g.OutputsLength())]
    initialized = {t.name for t in out.initializer}
    out.input.extend(infos.get(n, helper.make_empty_tensor_value_info(n)) for n in inputs if n not in initialized)
    out.output.extend(infos.get(n, helper.make_empty_tensor_value_info(n)) for n in outputs)
    # Nodes in their stored order (ORT saves them topologically sorted).
    nodes = sorted((g.Nodes(j) for j in range(g.NodesLength())), key=lambda n: n.Index())
    for n in nodes:
        if n.Type() != fbs.NodeType.NodeType.Primitive:
            sys.exit(f"node {text(n.Name())}: a fused node cannot be written as ONNX")
        node = helper.make_node(
            text(n.OpType()),
            [text(n.Inputs(j)) for j in range(n.InputsLength())],
            [text(n.Outputs(j)) for j in range(n.OutputsLength())],
            name=text(n.Name()),
            domain=text(n.Domain()),
        )
        node.attribute.extend(attribute(n.Attributes(j)) for j in range(n.AttributesLength()))
        out.node.append(node)
    # Intermediate shapes help the loader; graph inputs and outputs are already declared.
    declared = set(inputs) | set(outputs)
    out.value_info.extend(info for name, info in infos.items() if name not in declared and name not in initialized and info.HasField("type"))
    return out


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    src, dst = sys.argv[1], sys.argv[2]
    buf = bytearray(open(src, "rb").read())
    if not fbs.InferenceSession.InferenceSession.InferenceSessionBufferHasIdentifier(buf, 0):
        sys.exit(f"{src} is not an ORT-format model")
    session = fbs.InferenceSession.InferenceSession.GetRootAs(buf, 0)
    m = session.Model()
    model = onnx.ModelProto()
    model.ir_version = m.IrVersion()
    model.producer_name = "sightline convert-moonshine"
    for j in range(m.OpsetImportLength()):
        o = m.OpsetImport(j)
        model.opset_import.append(helper.make_opsetid(text(o.Domain()), o.Version()))
    for j in range(m.MetadataPropsLength()):
        p = m.MetadataProps(j)
        model.metadata_props.append(onnx.StringStringEntryProto(key=text(p.Key()), value=text(p.Value())))
    model.graph.CopyFrom(graph(m.Graph()))
    onnx.save(model, dst)


if __name__ == "__main__":
    main()
