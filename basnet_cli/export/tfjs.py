"""TF.js graph-model export, and the Node.js runner its check uses.

The graph model is written from a frozen, Grappler-optimised TensorFlow graph: the
``tensorflowjs`` pip package requires tensorflow-decision-forests, which pins TensorFlow 2.19,
so it cannot be installed next to TensorFlow 2.21.  The check runs it in Node.js with the npm
``@tensorflow/tfjs`` on its WebAssembly backend (no native tfjs-node).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from basnet_cli import __version__
from basnet_cli.export.formats import ExportError, describe_io
from basnet_cli.export.keras_savedmodel import serving_function

TFJS_NPM_VERSION = "4.22.0"

_TFJS_CLEARED_FIELDS = (
    "tensor_content", "half_val", "float_val", "double_val", "int_val", "string_val",
    "scomplex_val", "int64_val", "bool_val", "resource_handle_val", "variant_val",
    "uint32_val", "uint64_val")
_TFJS_SHARD_BYTES = 4 * 1024 * 1024


def _frozen_graph(model: Any, size: int) -> tuple[Any, str, str, Any]:
    """Frozen, Grappler-optimised GraphDef of the model at ``[1, size, size, 3]``.

    Returns ``(graph_def, input_name, output_name, signature_def)``.
    """
    from basnet_cli.runtime import import_tf

    tf = import_tf()
    from tensorflow.core.protobuf import config_pb2, meta_graph_pb2
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )
    from tensorflow.python.grappler import cluster as gcluster
    from tensorflow.python.grappler import tf_optimizer

    fn = serving_function(model, [1, size, size, 3]).get_concrete_function()
    frozen = convert_variables_to_constants_v2(fn)
    graph = frozen.graph
    input_name = frozen.inputs[0].name
    output_name = frozen.outputs[0].name
    signature = meta_graph_pb2.SignatureDef()
    for key, tensor, target in (("image", frozen.inputs[0], signature.inputs),
                                ("mask", frozen.outputs[0], signature.outputs)):
        target[key].name = tensor.name
        target[key].dtype = tensor.dtype.as_datatype_enum
        target[key].tensor_shape.CopyFrom(tensor.shape.as_proto())
    graph_def = graph.as_graph_def()
    meta = tf.compat.v1.train.export_meta_graph(graph_def=graph_def, graph=graph)
    meta.signature_def["serving_default"].CopyFrom(signature)
    meta.collection_def["train_op"].node_list.value.append(output_name.split(":")[0])
    config = config_pb2.ConfigProto()
    config.graph_options.rewrite_options.optimizers[:] = [
        "pruning", "constfold", "arithmetic", "dependency", "pruning", "constfold",
        "arithmetic", "dependency"]
    optimized = tf_optimizer.OptimizeGraph(config, meta, cluster=gcluster.Cluster())
    return optimized, input_name, output_name, signature


def _affine_uint8(data: np.ndarray) -> tuple[np.ndarray, float, float]:
    """TF.js's 8-bit affine weight quantisation (range nudged so 0 is exact)."""
    lo, hi = float(min(data.min(), 0.0)), float(max(data.max(), 0.0))
    if hi == lo:
        return np.zeros(data.shape, np.uint8), 1.0, lo
    scale = (hi - lo) / 255.0
    zero = round(-lo / scale)
    lo = -zero * scale
    q = np.clip(np.round((data - lo) / scale), 0, 255).astype(np.uint8)
    return q, scale, lo


def write_tfjs_graph_model(model: Any, out: Path, size: int, quantize: str) -> None:
    """A TF.js graph model folder (``model.json`` + 4 MiB ``group1-shard*.bin`` files).

    The same layout as ``tensorflowjs_converter --input_format tf_saved_model``: a frozen
    GraphDef as JSON, every ``Const`` node's value moved to the weight shards.  ``float16``
    stores float weights as float16; ``int8-dynamic`` stores conv kernels as 8-bit affine
    (uint8, min and scale per tensor); TF.js dequantises both to float32 when loading.
    """
    from google.protobuf.json_format import MessageToDict

    from basnet_cli.runtime import import_tf

    tf = import_tf()
    graph_def, _input_name, _output_name, signature = _frozen_graph(model, size)
    entries: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for node in graph_def.node:
        if node.op != "Const":
            continue
        value = tf.make_ndarray(node.attr["value"].tensor)
        entry: dict[str, Any] = {"name": node.name, "shape": list(value.shape)}
        if value.dtype == np.float32:
            entry["dtype"] = "float32"
            if quantize == "float16":
                value = value.astype(np.float16)
                entry["quantization"] = {"dtype": "float16", "original_dtype": "float32"}
            elif quantize == "int8-dynamic" and value.ndim >= 2 and value.size >= 64:
                value, scale, lo = _affine_uint8(value)
                entry["quantization"] = {"dtype": "uint8", "scale": scale, "min": lo,
                                         "original_dtype": "float32"}
        elif value.dtype in (np.int32, np.int64):
            entry["dtype"] = "int32"
            value = value.astype(np.int32)
        elif value.dtype == np.bool_:
            entry["dtype"] = "bool"
        else:
            raise ExportError(f"TF.js: constant {node.name} has unsupported dtype {value.dtype}")
        entries.append(entry)
        blobs.append(np.ascontiguousarray(value).tobytes())
        for name in _TFJS_CLEARED_FIELDS:
            node.attr["value"].tensor.ClearField(name)

    out.mkdir(parents=True)
    data = b"".join(blobs)
    shards = max(1, -(-len(data) // _TFJS_SHARD_BYTES))
    paths = []
    for i in range(shards):
        path = f"group1-shard{i + 1}of{shards}.bin"
        (out / path).write_bytes(data[i * _TFJS_SHARD_BYTES:(i + 1) * _TFJS_SHARD_BYTES])
        paths.append(path)
    model_json = {
        "format": "graph-model",
        "generatedBy": tf.__version__,
        "convertedBy": f"basnet-cli {__version__}",
        "signature": MessageToDict(signature),
        "modelTopology": MessageToDict(graph_def),
        "weightsManifest": [{"paths": paths, "weights": entries}],
        "userDefinedMetadata": {"basnet": {"input": describe_io("tfjs", quantize, size),
                                           "quantize": quantize}},
    }
    (out / "model.json").write_text(json.dumps(model_json))


# ---------------------------------------------------------------------------------------------
# TF.js runtime: Node.js with the pure-JS @tensorflow/tfjs package (no native tfjs-node).

_TFJS_RUNNER = r"""
// basnet-cli: run a TF.js graph model on raw float32 NHWC images (no tfjs-node).
const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs');

async function main() {
  const [modelDir, inPath, outPath, n, h, w] = process.argv.slice(2);
  const N = parseInt(n), H = parseInt(h), W = parseInt(w);
  // WebAssembly backend (portable .wasm shipped in the npm package, no native code) when
  // installed: ~50x faster than the plain-JS 'cpu' backend on convolutions.
  let backend = process.env.BASNET_TFJS_BACKEND || 'wasm';
  if (backend === 'wasm') {
    try { require('@tensorflow/tfjs-backend-wasm'); } catch (e) { backend = 'cpu'; }
  }
  if (!(await tf.setBackend(backend))) await tf.setBackend('cpu');
  await tf.ready();
  const modelJson = JSON.parse(fs.readFileSync(path.join(modelDir, 'model.json'), 'utf8'));
  const specs = [], buffers = [];
  for (const group of modelJson.weightsManifest) {
    for (const p of group.paths) buffers.push(fs.readFileSync(path.join(modelDir, p)));
    specs.push(...group.weights);
  }
  const all = Buffer.concat(buffers);
  const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength);
  const t0 = Date.now();
  const model = await tf.loadGraphModel(tf.io.fromMemory({
    modelTopology: modelJson.modelTopology, weightSpecs: specs, weightData: weightData,
    format: modelJson.format, generatedBy: modelJson.generatedBy,
    convertedBy: modelJson.convertedBy, signature: modelJson.signature,
    userDefinedMetadata: modelJson.userDefinedMetadata}));
  const loadMs = Date.now() - t0;
  const raw = fs.readFileSync(inPath);
  const input = new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
  const per = H * W * 3;
  const out = new Float32Array(N * H * W);
  const run = (i) => tf.tidy(() => model.predict(
      tf.tensor4d(input.subarray(i * per, (i + 1) * per), [1, H, W, 3], 'float32')));
  (await run(0)).dispose();  // warm-up
  const times = [];
  for (let i = 0; i < N; i++) {
    const s = process.hrtime.bigint();
    const y = run(i);
    const data = await y.data();
    times.push(Number(process.hrtime.bigint() - s) / 1e9);
    out.set(data, i * H * W);
    y.dispose();
  }
  fs.writeFileSync(outPath, Buffer.from(out.buffer));
  console.log(JSON.stringify({backend: tf.getBackend(), version: tf.version.tfjs,
                              load_ms: loadMs, times: times}));
}
main().catch((e) => { console.error(String(e && e.stack || e)); process.exit(1); });
"""


def tfjs_runtime_dir() -> Path:
    """Where ``@tensorflow/tfjs`` is installed for the check (``$BASNET_TFJS_DIR`` or
    ``~/.cache/basnet-cli/tfjs``; never inside the project)."""
    env = os.environ.get("BASNET_TFJS_DIR")
    if env:
        return Path(env)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "basnet-cli" / "tfjs"


def tfjs_runtime_status() -> tuple[bool, str]:
    """``(ready, reason)``: Node.js present and ``@tensorflow/tfjs`` installed."""
    if shutil.which("node") is None:
        return False, "Node.js (node) is not on PATH"
    package = tfjs_runtime_dir() / "node_modules" / "@tensorflow" / "tfjs" / "package.json"
    if not package.is_file():
        return False, f"@tensorflow/tfjs is not installed in {tfjs_runtime_dir()}"
    return True, "ready"


def ensure_tfjs_runtime(log: Callable[[str], None] | None = None) -> Path:
    """Install the pure-JS ``@tensorflow/tfjs`` with npm into :func:`tfjs_runtime_dir` once."""
    ready, reason = tfjs_runtime_status()
    if ready:
        return tfjs_runtime_dir()
    if shutil.which("node") is None:
        raise ExportError(f"cannot check the TF.js export: {reason} (install Node.js >= 18, "
                          f"or pass --no-check)")
    npm = shutil.which("npm")
    if npm is None:
        raise ExportError("cannot check the TF.js export: npm is not on PATH (or pass "
                          "--no-check)")
    target = tfjs_runtime_dir()
    target.mkdir(parents=True, exist_ok=True)
    if log:
        log(f"installing @tensorflow/tfjs@{TFJS_NPM_VERSION} and its WebAssembly backend "
            f"(one time) into {target}")
    proc = subprocess.run(
        [npm, "install", "--prefix", str(target), "--no-audit", "--no-fund",
         "--loglevel=error", f"@tensorflow/tfjs@{TFJS_NPM_VERSION}",
         f"@tensorflow/tfjs-backend-wasm@{TFJS_NPM_VERSION}"],
        capture_output=True, text=True, timeout=900, check=False)
    if proc.returncode != 0 or not tfjs_runtime_status()[0]:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise ExportError("npm could not install @tensorflow/tfjs: " + " | ".join(tail))
    return target


def run_tfjs(model_dir: Path, images: np.ndarray, *, timeout: float = 1800,
             log: Callable[[str], None] | None = None) -> tuple[np.ndarray, float, str]:
    """Run a TF.js graph model in Node.js.  Returns ``(probabilities, s/image, runtime)``."""
    runtime = ensure_tfjs_runtime(log)
    n, h, w, _ = images.shape
    with tempfile.TemporaryDirectory(prefix="basnet-tfjs-") as tmp:
        script = Path(tmp) / "run.js"
        script.write_text(_TFJS_RUNNER)
        inp, outp = Path(tmp) / "in.f32", Path(tmp) / "out.f32"
        np.ascontiguousarray(images, dtype=np.float32).tofile(inp)
        env = dict(os.environ, NODE_PATH=str(runtime / "node_modules"))
        proc = subprocess.run(["node", str(script), str(model_dir), str(inp), str(outp),
                               str(n), str(h), str(w)], capture_output=True, text=True,
                              env=env, timeout=timeout, check=False)
        if proc.returncode != 0:
            tail = proc.stderr.strip().splitlines()[-4:]
            raise ExportError("TF.js (Node.js) could not run the model: " + " | ".join(tail))
        info = json.loads(proc.stdout.strip().splitlines()[-1])
        probs = np.fromfile(outp, dtype=np.float32).reshape(n, h, w, 1)
    per_image = float(np.mean(info["times"]))
    runtime_name = f"@tensorflow/tfjs {info['version']} ({info['backend']} backend, Node.js)"
    return probs, per_image, runtime_name
