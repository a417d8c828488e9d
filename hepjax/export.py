"""A trained run, outside Python's training stack: ``hepjax export --workdir RUN --format
stablehlo|onnx``.

``export(workdir, format, out)`` restores the run's best checkpoint (``best/``, else the newest
periodic one) and its config, and builds the *inference function*: the run's fitted
preprocessing (``preprocessing.json``: log transforms, standardisation; padded particles stay 0)
followed by the network in evaluation mode (no dropout, batch-norm running statistics) and the
task's output layer (sigmoid signal probability (B,) for binary tasks, softmax class
probabilities (B, C) for multi-class). Its inputs are the dataset's *raw* model inputs, exactly
what ``hepjax.train.experiment.load_eval_data`` returns before preprocessing:

    features  (B, F) float32                     MLP on jet observables
              (B, H, W, C) float32               jet images
              (B, N, F) float32 + mask (B, N) bool [+ vectors (B, N, 4) float32 (E, px, py, pz) GeV]
                                                  particle models (PFN, ParticleNet, ParT, ...)

``vectors`` is an input only when the network reads it (ParT's pair features); the batch
size B is symbolic (any B >= 1), N is the run's ``data.max_particles``. An ensemble run
(``train.ensemble_size`` = K > 1) exports the mean of its K members' probabilities.

Formats:

* ``stablehlo``: ``jax.export.export(jit(fn))(...).serialize()`` written to ``OUT`` (a
  ``.jaxexport`` file; the StableHLO module plus calling convention, platforms cpu and, where
  available, cuda), next to ``OUT.json`` describing the inputs. Loading needs plain JAX only::

      import jax, numpy as np
      exported = jax.export.deserialize(bytearray(open("model.jaxexport", "rb").read()))
      features = np.zeros((7, 11), np.float32)          # any batch size
      probs = exported.call(features)                    # (+ mask, vectors for particle models)
      print(probs.shape, exported.in_avals)
      fast = jax.jit(exported.call)                      # repeated calls: compiled once

* ``onnx``: an ONNX model (opset 23) converted with jax2onnx (``pip install 'hepjax[export]'``)
  with a dynamic batch dimension ``B`` and the padding mask as a boolean input; checked against
  onnxruntime right after writing. Weaver-core (the CMS framework of ParticleNet and ParT)
  ships its taggers the same way, as ONNX with per-particle mask inputs.

The fast custom kernels (``hepjax.kernels``) are written for XLA:CPU's code generator; the
export uses their plain reference twins (``hepjax.kernels.use('reference')``, same values to
float rounding; ``tests/kernels``) so that the graph is plain lax (portable, and every op has an
ONNX equivalent). ``check_export`` compares an artefact with the harness's own predictions
(``hepjax.train.experiment.predict_run``) on the run's test split.

ParT with pair features: the pair feature ln m^2 of a particle paired with itself (the diagonal
of Qu, Li, Qian, "Particle Transformer for Jet Tagging", ICML 2022, eq. 3) is E^2 - p^2 of
massless particles: zero up to float32 rounding, which ln(max(m^2, 1e-8)) turned into O(10)
feature differences; XLA:CPU contracts the products into fused multiply-adds, onnxruntime does
not, and the ONNX probabilities differed by 5e-3 to 2e-2. ``hepjax.physics.pairwise_features``
now floors m^2 at 1e-6 (E_a + E_b)^2 (far below detector resolution; a floor, not a cut to 0,
which would make pairs within the rounding of the cut jump by ~15 in one runtime only), so the
feature is the same in both runtimes to the remaining relative rounding of m^2 above the floor,
and ParT's ONNX export agrees to 1e-5 (8.5e-6 on the export test's run: the smallest margin of
the four models; ln m^2 of nearly collinear pairs stays the worst-conditioned input).
"""
from __future__ import annotations

import importlib
import json
import pathlib
from typing import Any, Callable, NamedTuple

import numpy as np


class _Deferred:
    """A module imported on first attribute access: ``hepjax.cli`` builds its parser (with
    ``add_export_arguments``) without importing JAX."""

    def __init__(self, name):
        self._name = name

    def __getattr__(self, attr):
        return getattr(importlib.import_module(self._name), attr)


jax = _Deferred("jax")
jnp = _Deferred("jax.numpy")

FORMATS = ("stablehlo", "onnx")
SUFFIX = {"stablehlo": ".jaxexport", "onnx": ".onnx"}
BATCH = "B"


class Inference(NamedTuple):
    """``fn(*inputs)`` -> probabilities; ``input_names`` and per-example ``input_shapes`` /
    ``input_dtypes`` (without the batch axis) of its positional inputs; the run's config and
    the checkpoint step it was built from."""
    fn: Callable
    input_names: tuple
    input_shapes: tuple
    input_dtypes: tuple
    config: Any
    step: int

    def specs(self, batch):
        """``jax.ShapeDtypeStruct`` of each input for batch size ``batch`` (int or symbolic)."""
        return tuple(jax.ShapeDtypeStruct((batch, *shape), dtype)
                     for shape, dtype in zip(self.input_shapes, self.input_dtypes))


def _has_steps(folder: pathlib.Path) -> bool:
    return folder.is_dir() and any(p.name.isdigit() for p in folder.iterdir())


def _check_run(workdir) -> pathlib.Path:
    workdir = pathlib.Path(workdir)
    if not workdir.is_dir():
        raise FileNotFoundError(f"export: run directory {workdir} does not exist")
    if not (workdir / "config.json").is_file():
        raise FileNotFoundError(f"export: {workdir} has no config.json; is it a hepjax run "
                                "directory (written by `hepjax train`)?")
    for name in ("spec.json", "preprocessing.json"):
        if not (workdir / name).is_file():
            raise FileNotFoundError(f"export: {workdir} has no {name}; was the run started by "
                                    "`hepjax train` and did it write its first files?")
    if not (_has_steps(workdir / "best") or _has_steps(workdir / "checkpoints")):
        raise FileNotFoundError(f"export: {workdir} has no checkpoint (best/ and checkpoints/ "
                                "hold no saved step); train it first, or wait for its first "
                                "checkpoint")
    return workdir


def _input_layout(config) -> tuple[tuple[str, ...], dict]:
    """The names of the model inputs the dataset provides, and per-example shapes of each."""
    from hepjax.configs import defaults

    data = defaults.data_section(config.data)
    kind = data.get("representation", "jet_observables")
    if data.name == "top_tagging" and kind == "particles":
        return ("features", "mask", "vectors"), {"mask": (int(data.max_particles),),
                                                 "vectors": (int(data.max_particles), 4)}
    return ("features",), {}


def _used_inputs(fn, examples) -> tuple[bool, ...]:
    """Which positional arguments of ``fn`` its traced computation reads."""
    from jax.extend.core import Literal

    jaxpr = jax.make_jaxpr(fn)(*examples).jaxpr
    used = set()
    for eqn in jaxpr.eqns:
        used.update(v for v in eqn.invars if not isinstance(v, Literal))
    used.update(v for v in jaxpr.outvars if not isinstance(v, Literal))
    return tuple(v in used for v in jaxpr.invars)


def inference_function(workdir, which: str = "best") -> Inference:
    """The run's inference function (module docstring) and its input layout."""
    from flax import nnx

    from hepjax.train import experiment
    from hepjax.train.step import cast_batch, cast_floats, compute_dtype
    from hepjax.train.tasks import make_task

    workdir = _check_run(workdir)
    config = experiment._read_config(workdir)
    fitted = experiment.preprocessing.FittedPipeline.load(workdir / "preprocessing.json")
    names, extra_shapes = _input_layout(config)
    # the per-example feature shape: from the preprocessing's fitted statistics where it has
    # them, else from the data (read once)
    raw = experiment.load_eval_data(config)
    feature_shape = tuple(raw["features"].shape[1:])
    run = experiment.restore_run(workdir, feature_shape, which, config=config)
    task = make_task(config)
    dtype = compute_dtype(run.spec.precision)
    graphdef = run.graphdefs.eval

    def member(params, model_state, batch):
        if dtype != jnp.float32:
            params, batch = cast_floats(params, dtype), cast_batch(batch, dtype)
        model = nnx.merge(graphdef, params, model_state)
        return cast_floats(task.predict_fn(model, batch), jnp.float32)

    params, model_state = run.state.params, run.state.model_state
    ensemble = run.spec.ensemble

    def fn_all(*inputs):
        batch = dict(zip(names, inputs))
        mask = batch.get("mask")
        batch["features"] = fitted.transform(batch["features"], mask).astype(jnp.float32)
        if ensemble:
            return jax.vmap(member, in_axes=(0, 0, None))(params, model_state, batch).mean(0)
        return member(params, model_state, batch)

    shapes = {"features": feature_shape, **extra_shapes}
    dtypes = {"features": np.float32, "mask": np.bool_, "vectors": np.float32}
    examples = [jax.ShapeDtypeStruct((2, *shapes[n]), dtypes[n]) for n in names]
    from hepjax import kernels
    with kernels.use("reference"):
        used = _used_inputs(fn_all, examples)
    keep = tuple(n for n, u in zip(names, used) if u or n == "features")
    if keep == names:
        fn = fn_all
    else:
        def fn(*inputs):
            given = dict(zip(keep, inputs))
            # an input the network never reads: any value of the right shape
            full = [given[n] if n in given else jnp.zeros((inputs[0].shape[0], *shapes[n]), dtypes[n])
                    for n in names]
            return fn_all(*full)
    return Inference(fn, keep, tuple(shapes[n] for n in keep), tuple(dtypes[n] for n in keep),
                     config, run.step)


def _platforms() -> tuple[str, ...]:
    platforms = ["cpu"]
    try:
        if any(d.platform == "gpu" for d in jax.devices()):
            platforms.append("cuda")
    except RuntimeError:
        pass
    return tuple(platforms)


def _export_stablehlo(inference: Inference, out: pathlib.Path) -> None:
    from hepjax import kernels

    (batch,) = jax.export.symbolic_shape(BATCH)
    with kernels.use("reference"):
        exported = jax.export.export(jax.jit(inference.fn), platforms=_platforms())(
            *inference.specs(batch))
    out.write_bytes(exported.serialize())


def _export_onnx(inference: Inference, out: pathlib.Path) -> None:
    try:
        from jax2onnx import to_onnx
    except ImportError as err:
        raise ImportError("export --format onnx needs jax2onnx and onnxruntime: pip install "
                          "'hepjax[export]'") from err
    from hepjax import kernels

    fn = _rem_free(inference.fn)
    inputs = [jax.ShapeDtypeStruct((BATCH, *shape), dtype)
              for shape, dtype in zip(inference.input_shapes, inference.input_dtypes)]
    with kernels.use("reference"):
        model = to_onnx(fn, inputs, model_name="hepjax_" + str(inference.config.model.name),
                        input_names=list(inference.input_names), output_names=["probabilities"])
    import onnx

    model = _static_eye_like(model)
    onnx.checker.check_model(model)
    onnx.save(model, str(out))


# call-like primitives whose body is evaluated inline by `_rem_free` (custom derivative rules
# are irrelevant for inference)
_INLINE = {"pjit", "jit", "closed_call", "core_call", "custom_jvp_call", "custom_vjp_call",
           "custom_vjp_call_jaxpr", "remat", "checkpoint"}


def _rem_free(fn):
    """``fn`` with every floating ``lax.rem`` (``x % y``, e.g. the wrapping of azimuthal
    differences in ParT's pair features) written as ``x - y * trunc(x / y)``.

    jax2onnx 0.17.1 lowers ``rem`` to ONNX ``Mod(fmod=1)`` but stamps its output shape with the
    symbolic batch dimension as an integer and fails (``InconclusiveDimensionOperation``); the
    rewritten form lowers through Div/Floor/Ceil/Mul/Sub. It differs from the exact fmod by float
    rounding (one ulp of x where the quotient is not an exact small integer)."""
    from jax.extend.core import ClosedJaxpr, Literal

    def run(jaxpr, consts, *args):
        env = {}

        def read(v):
            return v.val if isinstance(v, Literal) else env[v]

        env.update(zip(jaxpr.constvars, consts))
        env.update(zip(jaxpr.invars, args))
        for eqn in jaxpr.eqns:
            invals = [read(v) for v in eqn.invars]
            name = eqn.primitive.name
            sub = eqn.params.get("jaxpr", eqn.params.get("call_jaxpr"))
            if name == "rem" and jnp.issubdtype(invals[0].dtype, jnp.floating):
                x, y = invals
                outs = [x - y * jnp.trunc(x / y)]
            elif name in _INLINE and sub is not None:
                closed = sub if isinstance(sub, ClosedJaxpr) else ClosedJaxpr(sub, ())
                outs = run(closed.jaxpr, closed.consts, *invals)
            else:
                with eqn.ctx.manager:
                    outs = eqn.primitive.bind(*invals, **eqn.primitive.get_bind_params(eqn.params))
                if not eqn.primitive.multiple_results:
                    outs = [outs]
            env.update(zip(eqn.outvars, outs))
        return [read(v) for v in jaxpr.outvars]

    def wrapped(*args):
        closed = jax.make_jaxpr(fn)(*args)
        (out,) = run(closed.jaxpr, closed.consts, *args)
        return out

    return wrapped


_ONNX_DTYPES = {1: np.float32, 6: np.int32, 7: np.int64, 9: np.bool_, 11: np.float64}


def _static_eye_like(model):
    """Replaces each ``EyeLike`` node of a static shape with a constant identity matrix.

    jax2onnx writes ``jnp.eye(n, dtype=bool)`` (ParticleNet's k-NN excludes each particle from
    its own neighbours) as ``EyeLike`` with a boolean output, which onnxruntime 1.32 has no CPU
    kernel for; the matrix depends only on the (static) particle count, so a constant is exact.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    info = {v.name: v for v in list(graph.value_info) + list(graph.input) + list(graph.output)}
    nodes = []
    for node in graph.node:
        if node.op_type == "EyeLike" and node.output[0] in info:
            tensor = info[node.output[0]].type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else 0 for d in tensor.shape.dim]
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            dtype = _ONNX_DTYPES.get(int(attrs.get("dtype", tensor.elem_type)))
            if len(dims) == 2 and all(dims) and dtype is not None:
                eye = np.eye(dims[0], dims[1], int(attrs.get("k", 0)), dtype=dtype)
                nodes.append(helper.make_node("Constant", [], [node.output[0]], name=node.name,
                                              value=numpy_helper.from_array(eye)))
                continue
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    return model


def export(workdir, format: str = "stablehlo", out=None, which: str = "best",
           check: bool = True) -> dict:
    """Writes the run's inference function (module docstring) as ``format`` to ``out`` (default
    ``WORKDIR/export/model.jaxexport`` or ``.onnx``) and a description ``out + '.json'``; with
    ``check``, re-loads the artefact (plain JAX / onnxruntime) and records its largest absolute
    difference from the in-process function on a few test jets. Returns the description."""
    if format not in FORMATS:
        raise ValueError(f"export: format={format!r}; expected one of {FORMATS}")
    inference = inference_function(workdir, which)
    workdir = pathlib.Path(workdir)
    out = pathlib.Path(out) if out else workdir / "export" / ("model" + SUFFIX[format])
    out.parent.mkdir(parents=True, exist_ok=True)
    (_export_stablehlo if format == "stablehlo" else _export_onnx)(inference, out)
    info = {"format": format, "path": str(out), "workdir": str(workdir),
            "checkpoint_step": inference.step, "model": str(inference.config.model.name),
            "task": str(inference.config.task),
            "inputs": [{"name": n, "shape": [BATCH, *s], "dtype": np.dtype(d).name}
                       for n, s, d in zip(inference.input_names, inference.input_shapes,
                                          inference.input_dtypes)],
            "output": "probabilities: (B,) signal probability" if inference.config.task == "binary"
                      else "probabilities: (B, C) class probabilities"}
    if check:
        from hepjax.train import experiment

        raw = experiment.load_eval_data(inference.config)
        inputs = [np.asarray(raw[n][:37], d) for n, d in zip(inference.input_names,
                                                             inference.input_dtypes)]
        from hepjax import kernels
        with kernels.use("reference"):
            expected = np.asarray(jax.jit(inference.fn)(*inputs))
        got = run_artefact(out, inputs, format)
        info["check_max_abs_diff"] = float(np.max(np.abs(got - expected)))
    pathlib.Path(str(out) + ".json").write_text(json.dumps(info, indent=2))
    return info


def run_artefact(path, inputs, format: str | None = None) -> np.ndarray:
    """Runs an exported artefact on ``inputs`` (a list of arrays in the order of its
    description's ``inputs``): plain ``jax.export.deserialize`` for StableHLO, onnxruntime
    (CPU) for ONNX."""
    path = pathlib.Path(path)
    format = format or ("onnx" if path.suffix == ".onnx" else "stablehlo")
    if format == "onnx":
        return onnx_session(path)(inputs)
    exported = jax.export.deserialize(bytearray(path.read_bytes()))
    return np.asarray(exported.call(*inputs))


def onnx_session(path, threads: int = 0):
    """``inputs -> outputs`` of an onnxruntime CPU session on the ONNX file ``path``
    (``threads`` > 0: intra-op threads)."""
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise ImportError("running ONNX models needs onnxruntime: pip install 'hepjax[export]'") from err
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]

    def call(inputs):
        return session.run(None, dict(zip(names, inputs)))[0]

    return call


def check_export(workdir, path, batch_size: int = 256) -> dict:
    """Largest absolute difference between the artefact at ``path`` and the harness's own
    predictions (``predict_run``: the compiled evaluation step, default kernels) over the run's
    whole test split, run in batches of ``batch_size`` (the last one smaller)."""
    from hepjax.train import experiment

    workdir = pathlib.Path(workdir)
    expected, _ = experiment.predict_run(workdir)
    if expected.ndim > 1 and experiment.spec_lib.load(workdir).ensemble:
        expected = expected.mean(0)
    info = json.loads(pathlib.Path(str(path) + ".json").read_text())
    names = [i["name"] for i in info["inputs"]]
    dtypes = [i["dtype"] for i in info["inputs"]]
    config = experiment._read_config(workdir)
    raw = experiment.load_eval_data(config)
    fmt = info["format"]
    runner = onnx_session(path) if fmt == "onnx" else None
    exported = None if runner else jax.export.deserialize(bytearray(pathlib.Path(path).read_bytes()))
    got = []
    n = len(raw["label"])
    for start in range(0, n, batch_size):
        inputs = [np.asarray(raw[k][start:start + batch_size], d) for k, d in zip(names, dtypes)]
        got.append(np.asarray(runner(inputs) if runner else exported.call(*inputs)))
    got = np.concatenate(got)
    return {"n_test": n, "max_abs_diff": float(np.max(np.abs(got - expected))),
            "format": fmt}


def add_export_arguments(parser) -> None:
    """The ``hepjax export`` arguments."""
    parser.add_argument("--workdir", required=True, help="a trained run directory")
    parser.add_argument("--format", choices=FORMATS, default="stablehlo")
    parser.add_argument("--out", default=None, help="output file (default WORKDIR/export/model"
                        ".jaxexport or .onnx)")
    parser.add_argument("--checkpoint", choices=("best", "latest"), default="best")
    parser.add_argument("--check-test-set", action="store_true",
                        help="compare with the harness's predictions on the whole test split")


def export_main(args) -> dict:
    """``hepjax export``: writes the artefact, returns its description (printed as JSON)."""
    info = export(args.workdir, args.format, args.out, which=args.checkpoint)
    if getattr(args, "check_test_set", False):
        info["test_set"] = check_export(args.workdir, info["path"])
    return info
