#!/usr/bin/env python3
"""What third-party NIR readers make of an onnx2snn NIR file (``onnx2snn ... --nir``).

Each reader lives in its own virtual environment (never the project's: they are no onnx2snn
dependencies), so the script runs once per reader, with that reader's python, and prints ONE
JSON line to stdout (progress goes to stderr). docs/NIR_READERS.md has the set-up and results.

    F=/tmp/nirbench/out/mnist_cnn.nir D=models/mnist_test.npz
    .venv/bin/python tools/benchmark_nir_readers.py --reader onnx2snn --nir $F --data $D \\
        --predictions-out /tmp/nirbench/onnx2snn_pred.npy
    for r in nirtorch norse snntorch sinabs; do
        /work/nir-readers/$r/bin/python tools/benchmark_nir_readers.py --reader $r --nir $F --data $D \\
            --reference /tmp/nirbench/onnx2snn_pred.npy
    done

For a reader the script records, in this order:

1. ``read``: whether the reader's own ``nir`` package reads the file (``nir.read``).
2. ``as_is``: whether the reader's documented import function loads the graph unchanged
   (nirtorch: ``nirtorch.nir_to_torch(graph, {})``; norse: ``norse.torch.from_nir``; snnTorch:
   ``snntorch.import_nir.import_from_nir``; sinabs: ``sinabs.from_nir``), and the first line of
   the error where not.
3. ``node_mapping``: what the reader's own per-node mapping function makes of each NIR node (a
   class name, or "unmapped").
4. ``probe``: one IF neuron (threshold 1, the onnx2snn metadata on it) built by the reader's own
   mapping, driven with constant currents 1, 0.75, 0.5, 0.375, 0.25, 0.125 and 2.5 for 12 steps; its spike trains are
   matched against every combination of initial potential (0 or 0.5), firing rule (v >= θ or
   v > θ), reset (subtract or to zero), leak (none or β = 0.9) and spikes per step (one or
   ⌊v/θ⌋), which tells which onnx2snn semantics the reader honours — measured, not read off its
   documentation.
5. ``runs``: where the reader cannot load the file as it is, the smallest adaptation that lets it
   run is made and named (e.g. the node types it has no mapping for get one: AvgPool2d ->
   torch.nn.AvgPool2d, the I readout -> the identity, summed over the T steps by this script);
   the reader's own mapping of every other node, its neurons above all, is kept. Each run
   simulates the test set for T steps with the image as a constant input current at every step
   and takes the class as the argmax of the output summed over the T steps (= the state of the
   I integrator). Runs named ``mimic ...`` also set the onnx2snn semantics by hand where the
   reader lets one (initial potential 0.5·θ, v >= θ, subtractive reset, no leak).

``--reader onnx2snn`` (the project's venv) gives the reference: ``onnx2snn.load_nir(path)`` and
``SpikingNetwork.simulate``; ``--predictions-out`` saves its classes, and ``--reference`` on a
reader's run reports the agreement of that run's classes with them.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from importlib import metadata

import numpy as np

READERS = ("onnx2snn", "nirtorch", "norse", "snntorch", "sinabs")
PACKAGE = {"onnx2snn": "onnx2snn", "nirtorch": "nirtorch", "norse": "norse", "snntorch": "snntorch",
           "sinabs": "sinabs"}
PROBE_CURRENTS = (1.0, 0.75, 0.5, 0.375, 0.25, 0.125, 2.5)   # exact in float32
PROBE_STEPS = 12


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}".strip()


def version(pkg):
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def machine(reader: str, threads: int) -> dict:
    import torch
    model = platform.processor()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    return {"cpu_cores": os.cpu_count(), "cpu_cores_usable": len(os.sched_getaffinity(0)),
            "cpu_model": model, "torch_threads": threads, "python": platform.python_version(),
            "torch": torch.__version__, "nir": version("nir"), "nirtorch": version("nirtorch"),
            "reader": reader, "reader_version": version(PACKAGE[reader])}


def machine_line(m: dict) -> str:
    line = (f"{m['cpu_cores']} CPU cores ({m['cpu_cores_usable']} usable, {m['cpu_model']}), torch "
            f"{m['torch']} on {m['torch_threads']} thread(s), Python {m['python']}, nir {m['nir']}")
    if m["reader"] != "nirtorch":
        line += f", nirtorch {m['nirtorch'] or 'not installed'}"
    return line + f", {m['reader']} {m['reader_version']}"


# --- semantics probe -------------------------------------------------------------------------------

def reference_train(current, v0, ge, subtract, beta, multi, steps=PROBE_STEPS):
    v, out = v0, []
    for _ in range(steps):
        v = beta * v + current
        fires = v >= 1.0 if ge else v > 1.0
        n = (np.floor(v) if multi else 1.0) if fires else 0.0
        out.append(float(n))
        if fires:
            v = v - n if subtract else 0.0
    return out


def classify(trains: dict) -> dict:
    """The parameter combinations whose spike trains equal the measured ones."""
    names = ("v_init", "fires", "reset", "leak", "spikes_per_step")
    matches = []
    for v0, ge, sub, beta, multi in itertools.product((0.0, 0.5), (True, False), (True, False), (1.0, 0.9),
                                                       (False, True)):
        if all(reference_train(c, v0, ge, sub, beta, multi) == trains[str(c)] for c in PROBE_CURRENTS):
            matches.append(dict(zip(names, (v0, "v >= threshold" if ge else "v > threshold",
                                            "subtract" if sub else "to zero", "none" if beta == 1 else f"beta={beta}",
                                            "floor(v/threshold)" if multi else "one"))))
    result = {"trains": trains, "matching_models": matches}
    if matches:
        agreed = {k: sorted({str(m[k]) for m in matches}) for k in names}
        result["honours"] = {
            "v_init=0.5": agreed["v_init"] == ["0.5"],
            "reset=subtract": agreed["reset"] == ["subtract"],
            "fires v >= threshold": agreed["fires"] == ["v >= threshold"],
            "no leak (IF)": agreed["leak"] == ["none"],
            "one spike per step": agreed["spikes_per_step"] == ["one"]}
        result["model"] = {k: (v[0] if len(v) == 1 else "either") for k, v in agreed.items()}
    return result


def probe_if(nir, make_stepper) -> dict:
    """``make_stepper(if_node)`` returns ``step(current_tensor) -> spikes`` for fresh state."""
    import torch
    node = nir.IF(r=np.ones(1, np.float32), v_threshold=np.ones(1, np.float32),
                  **({"v_reset": np.zeros(1, np.float32)} if "v_reset" in nir.IF.__dataclass_fields__ else {}))
    if hasattr(node, "metadata"):
        node.metadata.update({"onnx2snn.reset": "subtract", "onnx2snn.fires": "v >= threshold",
                              "onnx2snn.v_init": 0.5})
    trains = {}
    for c in PROBE_CURRENTS:
        step = make_stepper(node)
        trains[str(c)] = [float(step(torch.full((1, 1), c)).reshape(-1)[0]) for _ in range(PROBE_STEPS)] \
            if not getattr(step, "sequence", False) else \
            [float(s) for s in step(torch.full((1, PROBE_STEPS, 1), c)).reshape(-1)]
    return classify(trains)


# --- simulation ------------------------------------------------------------------------------------

def simulate(run_batch, x, y, T, batch, reference=None, name="", fallback=True) -> dict:
    """``run_batch(xb, T) -> (B, classes)`` summed outputs. A batch that fails (e.g. a Flatten
    over the batch dimension) is retried one sample at a time, and the failure recorded."""
    import torch
    rec = {"variant": name, "T": T, "n": len(x)}
    t0 = time.time()
    preds = []
    with torch.no_grad():
        def classes(xb):
            return run_batch(torch.from_numpy(xb), T).reshape(len(xb), -1).argmax(1).numpy()
        try:
            preds.append(classes(x[:batch]))
        except Exception as e:
            if not fallback or batch == 1:
                raise
            rec["batch_error"] = first_line(e)
            log(f"  batch of {batch} fails ({rec['batch_error']}); one sample at a time")
            batch = 1
            preds.append(classes(x[:1]))
        for k, i in enumerate(range(len(preds[0]), len(x), batch)):
            preds.append(classes(x[i:i + batch]))
            if k % max(1, 200 // batch) == 0:
                log(f"  {name}: {i + batch}/{len(x)}")
    pred = np.concatenate(preds)
    rec.update(batch=batch, accuracy=float(np.mean(pred == y)), seconds=round(time.time() - t0, 1))
    if reference is not None:
        rec["agreement_with_onnx2snn"] = float(np.mean(pred == reference[:len(pred)]))
    return rec


def node_mapping(graph, map_one) -> dict:
    out = {}
    for name, node in graph.nodes.items():
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                m = map_one(node)
            out[name] = f"{type(node).__name__} -> " + ("unmapped" if m is None else type(m).__name__)
        except Exception as e:
            out[name] = f"{type(node).__name__} -> error ({first_line(e)})"
    return out


def try_load(fn) -> dict:
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            fn()
        return {"loads": True}
    except Exception as e:
        log(traceback.format_exc(limit=-2))
        return {"loads": False, "error": first_line(e)}


def if_shapes(graph, nir):
    return {k: tuple(np.asarray(n.v_threshold).shape) for k, n in graph.nodes.items() if isinstance(n, nir.IF)}


# --- nirtorch's generic interpreter (shared by nirtorch and snnTorch) ------------------------------

def fx_runner(module, reset=None):
    """Steps a ``nirtorch.nir_to_torch`` GraphModule: ``out, state = m(x, state)``."""
    def run_batch(xb, T):
        if reset:
            reset(xb.shape[0])
        state, total = None, 0
        for _ in range(T):
            out, state = module(xb, state)
            total = total + out
        return total
    return run_batch


class NirIF:
    """Plain-torch IF neurons for nirtorch, which maps no neuron itself. ``metadata=False``: NIR's
    own IF (v += r·I, fires v > θ, v ← v_reset, v starts at 0); ``True``: onnx2snn's metadata
    honoured (v starts at v_init·θ, fires v >= θ, v ← v − θ)."""

    @staticmethod
    def module(node, metadata: bool):
        import torch

        class IF(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.r = torch.from_numpy(np.asarray(node.r, np.float32))
                self.th = torch.from_numpy(np.asarray(node.v_threshold, np.float32))
                self.v_reset = torch.from_numpy(np.asarray(getattr(node, "v_reset", np.zeros_like(node.r)), np.float32))
                meta = node.metadata if metadata else {}
                self.subtract = meta.get("onnx2snn.reset") == "subtract"
                self.ge = meta.get("onnx2snn.fires") == "v >= threshold"
                self.v0 = float(np.asarray(meta.get("onnx2snn.v_init", 0.0)).mean()) if metadata else 0.0

            def forward(self, x, state=None):
                v = self.v0 * self.th + 0 * x if state is None else state
                v = v + self.r * x
                z = (v >= self.th if self.ge else v > self.th).to(x.dtype)
                v = v - z * self.th if self.subtract else torch.where(z > 0, self.v_reset, v)
                return z, v
        return IF()


def run_nirtorch(args, x, y, ref, out):
    import nir
    import nirtorch
    import torch
    from nirtorch import nir_interpreter as ni

    graph = nir.read(args.nir)
    out["read"] = {"ok": True}
    out["as_is"] = try_load(lambda: nirtorch.nir_to_torch(graph, {}))
    out["node_mapping"] = node_mapping(graph, lambda n: ni._map_nir_node_to_torch(n, ni.DEFAULT_MAP))

    def identity_readout(node):
        return torch.nn.Identity()

    def stepper(meta):
        def make(node):
            m = NirIF.module(node, meta)
            state = [None]

            def step(c):
                z, state[0] = m(c, state[0])
                return z
            return step
        return make
    out["probe"] = {"supplied nir.IF (NIR semantics)": probe_if(nir, stepper(False)),
                    "supplied nir.IF (onnx2snn metadata)": probe_if(nir, stepper(True))}

    def affine_fixed(node):
        m = torch.nn.Linear(node.weight.shape[1], node.weight.shape[0])
        m.weight.data = torch.from_numpy(np.asarray(node.weight, np.float32))
        m.bias.data = torch.from_numpy(np.asarray(node.bias, np.float32))
        return m

    variants = [
        ("IF supplied with NIR semantics (metadata ignored), I -> identity", False, False),
        ("IF supplied with NIR semantics (metadata ignored), I -> identity, Affine bias loaded by hand", False, True),
        ("IF supplied honouring onnx2snn metadata, I -> identity", True, False),
        ("IF supplied honouring onnx2snn metadata, I -> identity, Affine bias loaded by hand", True, True)]
    out["runs"] = []
    for name, meta, fix in variants:
        torch.manual_seed(0)   # nirtorch's default Affine keeps torch.nn.Linear's random bias
        node_map = {nir.IF: (lambda n, meta=meta: NirIF.module(n, meta)), nir.I: identity_readout}
        if fix:
            node_map[nir.Affine] = affine_fixed
        m = nirtorch.nir_to_torch(graph, node_map)
        if not fix:
            lin = next(mod for mod in m.modules() if isinstance(mod, torch.nn.Linear))
            a = next(n for n in graph.nodes.values() if isinstance(n, nir.Affine))
            out["affine_bias_loaded"] = bool(np.allclose(lin.bias.detach().numpy(), a.bias))
        out["runs"].append(simulate(fx_runner(m), x, y, args.T, args.batch, ref, name))


# --- norse -----------------------------------------------------------------------------------------

def executor_runner(module, initial_state=None):
    """Steps a ``nirtorch.load`` GraphExecutor: ``out, state = m(x, state)``."""
    def run_batch(xb, T):
        state, total = (initial_state(xb.shape[0]) if initial_state else None), 0
        for _ in range(T):
            out, state = module(xb, state)
            total = total + out
        return total
    return run_batch


def run_norse(args, x, y, ref, out):
    import nir
    import nirtorch
    import torch
    import norse.torch as nt
    from norse.torch.utils import import_nir as ni
    from norse.torch.functional.iaf import IAFFeedForwardState

    graph = nir.read(args.nir)
    out["read"] = {"ok": True}
    out["as_is"] = try_load(lambda: nt.from_nir(graph))
    out["node_mapping"] = node_mapping(graph, ni._import_norse_module)

    def make(node):
        cell, state = ni._import_norse_module(node), [None]

        def step(c):
            z, state[0] = cell(c, state[0])
            return z
        return step
    out["probe"] = {"norse IAFCell (from_nir)": probe_if(nir, make)}

    def extended(node):
        m = ni._import_norse_module(node)
        if m is None and isinstance(node, nir.AvgPool2d):
            return torch.nn.AvgPool2d(tuple(int(k) for k in node.kernel_size), tuple(int(s) for s in node.stride),
                                      tuple(int(p) for p in node.padding))
        if m is None and isinstance(node, nir.I):
            return torch.nn.Identity()
        return m
    module = nirtorch.load(graph, extended)
    shapes = {nirtorch.utils.sanitize_name(k): s for k, s in if_shapes(graph, nir).items()}
    out["runs"] = [simulate(executor_runner(module), x, y, args.T, args.batch, ref,
                            "norse mapping; AvgPool2d -> torch.nn.AvgPool2d, I -> identity supplied")]

    def v_init_state(b):   # a GraphExecutorState whose IAF cells start at 0.5·θ
        from nirtorch.graph_executor import GraphExecutorState
        return GraphExecutorState(state={k: (IAFFeedForwardState(v=torch.full((b, *s), 0.5)),) for k, s in shapes.items()})
    out["runs"].append(simulate(executor_runner(module, v_init_state), x, y, args.T, args.batch, ref,
                                "mimic v_init=0.5 (initial IAF state); reset-to-zero and v > threshold kept"))


# --- snnTorch --------------------------------------------------------------------------------------

def run_snntorch(args, x, y, ref, out):
    import nir
    import nirtorch
    import torch
    import snntorch
    from snntorch import import_nir as si

    graph = nir.read(args.nir)
    out["read"] = {"ok": True}
    out["as_is"] = try_load(lambda: si.import_from_nir(nir.read(args.nir)))
    from nirtorch import nir_interpreter as nti
    own = {nir.Affine, nir.Linear, nir.Conv2d, nir.Flatten, nir.AvgPool2d, nir.IF, nir.LIF, nir.CubaLIF}
    out["node_mapping"] = node_mapping(graph, lambda n: si._nir_to_snntorch_module(n, init_hidden=True)
                                       if type(n) in own else nti._map_nir_node_to_torch(n, nti.DEFAULT_MAP))

    def mimic_leaky(leaky, shape, ge=True, v0=True):
        leaky.beta.fill_(1.0) if torch.is_tensor(leaky.beta) else setattr(leaky, "beta", torch.tensor(1.0))
        if ge:
            leaky.spike_grad = lambda s: (s >= 0).float()
        if v0:
            leaky.mem = torch.full(shape, 0.5)

    def make(node, mimic=False):
        leaky = si._nir_to_snntorch_module(node, init_hidden=True)
        if mimic:
            mimic_leaky(leaky, (1, 1))

        def step(c):
            spk, _ = leaky(c)
            return spk
        return step
    out["probe"] = {"snntorch Leaky (import_from_nir)": probe_if(nir, make),
                    "snntorch Leaky, mimic (beta=1, v >= threshold, mem 0.5)": probe_if(nir, lambda n: make(n, True))}

    def build(level):
        """level 0: as mapped; 1: beta=1; 2: beta=1, v >= θ, mem starts at 0.5 (reset per batch)."""
        with contextlib.redirect_stdout(io.StringIO()):
            g = si._replace_rnn_subgraph_with_nirgraph(nir.read(args.nir))
        node_map = {t: (lambda n: si._nir_to_snntorch_module(n, init_hidden=True)) for t in own}
        node_map[nir.I] = lambda n: torch.nn.Identity()
        with contextlib.redirect_stdout(io.StringIO()):
            m = nirtorch.nir_to_torch(g, node_map)
        leakies = {k: mod for k, mod in m.named_modules() if isinstance(mod, snntorch.Leaky)}
        return m, leakies

    out["runs"] = []
    shapes = if_shapes(graph, nir)
    for level, name in ((0, "snntorch mapping (Leaky beta=0.9); I -> identity supplied"),
                        (1, "mimic IF: Leaky beta=1"),
                        (2, "mimic IF: beta=1, v >= threshold, initial mem 0.5")):
        m, leakies = build(level)

        def reset(b, leakies=leakies, level=level):
            for k, lk in leakies.items():
                lk.mem = torch.zeros(0)     # snnTorch keeps mem in the module; a new batch starts fresh
                if level >= 1:
                    mimic_leaky(lk, (b, *shapes[k]), ge=level >= 2, v0=level >= 2)
        if level == 0:
            try:
                out["runs"].append(simulate(fx_runner(m, reset), x, y, args.T, args.batch, ref, name))
                continue
            except Exception as e:
                log(traceback.format_exc(limit=-3))
                out["runs"].append({"variant": name + " (as loaded)", "error": first_line(e)})
            name += " + init_hidden=True set on each Leaky"
        # import_from_nir builds every Leaky with init_hidden=False, so it returns (spk, mem) and the
        # next module gets a tuple; with init_hidden=True it returns the spikes and keeps mem itself
        for lk in leakies.values():
            lk.init_hidden = True
        out["runs"].append(simulate(fx_runner(m, reset), x, y, args.T, args.batch, ref, name))


# --- sinabs ----------------------------------------------------------------------------------------

def nir104_copy(path: str, drop_v_reset: bool = True) -> str:
    """A copy that nir <= 1.0.4 reads: without node metadata (1.0.4's Conv2d has no such field)
    and without IF.v_reset (1.0.4's IF has none; onnx2snn writes zeros)."""
    import h5py
    fd, tmp = tempfile.mkstemp(suffix=".nir")
    os.close(fd)
    with open(path, "rb") as src, open(tmp, "wb") as dst:
        dst.write(src.read())
    with h5py.File(tmp, "a") as f:
        def strip(group):
            for name in list(group.keys()):
                node = group[name]
                if "metadata" in node:
                    del node["metadata"]
                t = node["type"][()]
                t = t.decode() if isinstance(t, bytes) else str(t)
                if drop_v_reset and t == "IF" and "v_reset" in node:
                    if np.any(node["v_reset"][()] != 0):
                        raise ValueError("IF.v_reset is not zero: no nir 1.0.4 form")
                    del node["v_reset"]
                if t == "NIRGraph":
                    strip(node["nodes"])
        strip(f["node"]["nodes"])
    return tmp


def run_sinabs(args, x, y, ref, out):
    import nir
    import nirtorch
    import torch
    import sinabs
    import sinabs.layers as sl
    import sinabs.activation as sa
    from sinabs import nir as sn

    try:
        graph = nir.read(args.nir)
        out["read"] = {"ok": True}
    except Exception as e:
        out["read"] = {"ok": False, "error": first_line(e)}
        try:    # which of the two differences stops nir 1.0.4
            nir.read(nir104_copy(args.nir, drop_v_reset=False))
        except Exception as e2:
            out["read"]["without_node_metadata_only"] = first_line(e2)
        tmp = nir104_copy(args.nir)
        graph = nir.read(tmp)
        out["read"]["adaptation"] = ("read a copy without node metadata and IF.v_reset (zeros); this drops "
                                     "every onnx2snn.* key")
    B = args.batch
    out["as_is"] = try_load(lambda: sinabs.from_nir(graph, batch_size=B)) if out["read"]["ok"] else \
        {"loads": False, "error": out["read"]["error"], "copy_without_metadata": try_load(
            lambda: sinabs.from_nir(graph, batch_size=B))}
    out["node_mapping"] = node_mapping(graph, lambda n: sn._import_sinabs_module(n, batch_size=B, num_timesteps=None))

    def mimic_iaf(layer, b, shape):
        layer.spike_fn = sa.SingleSpike
        layer.min_v_mem = None
        layer.init_state_with_shape((b, *shape))
        layer.v_mem.fill_(0.5)

    def make(node, mimic=False):
        layer = sn._import_sinabs_module(node, batch_size=1, num_timesteps=None)
        if mimic:
            mimic_iaf(layer, 1, (1,))

        def step(c):   # (1, T, 1) -> squeezed (T, 1)
            return layer(c.reshape(-1, 1))
        step.sequence = True
        return step
    out["probe"] = {"sinabs IAFSqueeze (from_nir)": probe_if(nir, make),
                    "sinabs IAFSqueeze, mimic (SingleSpike, no min_v_mem, v_mem 0.5)": probe_if(nir, lambda n: make(n, True))}

    def extended(node):
        m = sn._import_sinabs_module(node, batch_size=B, num_timesteps=None)
        if m is None and isinstance(node, nir.AvgPool2d):
            return torch.nn.AvgPool2d(tuple(int(k) for k in node.kernel_size), tuple(int(s) for s in node.stride),
                                      tuple(int(p) for p in node.padding))
        if m is None and isinstance(node, nir.I):
            return torch.nn.Identity()
        return m

    shapes = {nirtorch.utils.sanitize_name(k): s for k, s in if_shapes(graph, nir).items()}
    out["runs"] = []
    for mimic, name in ((False, ("sinabs mapping (IAFSqueeze, MultiSpike, min_v_mem=-threshold); AvgPool2d -> "
                                 "torch.nn.AvgPool2d, I -> identity supplied")),
                        (True, "mimic: SingleSpike, no min_v_mem, initial v_mem 0.5")):
        module = nirtorch.load(graph, extended, return_state=False)
        iafs = {k: mod for k, mod in module.named_modules() if isinstance(mod, sl.IAFSqueeze)}

        def run_batch(xb, T, iafs=iafs, module=module, mimic=mimic):
            b = xb.shape[0]
            for k, layer in iafs.items():
                layer.reset_states()
                if mimic:
                    mimic_iaf(layer, b, shapes[k.split(".")[-1]])
            seq = xb.unsqueeze(1).expand(b, T, *xb.shape[1:]).reshape(b * T, *xb.shape[1:])
            return module(seq).reshape(b, T, -1).sum(1)
        out["runs"].append(simulate(run_batch, x, y, args.T, B, ref, name, fallback=False))


def run_onnx2snn(args, x, y, ref, out):
    import onnx2snn
    out["read"] = {"ok": True}
    t0 = time.time()
    net = onnx2snn.load_nir(args.nir)
    out["as_is"] = {"loads": True}
    r = net.simulate(x, args.T, labels=y, device="cpu", batch_size=args.batch)
    pred = r.outputs.argmax(1)
    out["runs"] = [{"variant": "onnx2snn.load_nir + SpikingNetwork.simulate (metadata honoured)", "T": args.T,
                    "n": len(x), "batch": args.batch, "accuracy": r.accuracy,
                    "seconds": round(time.time() - t0, 1)}]
    if args.predictions_out:
        np.save(args.predictions_out, pred)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reader", required=True, choices=READERS)
    p.add_argument("--nir", required=True, help="the .nir file (onnx2snn ... --nir)")
    p.add_argument("--data", required=True, help="npz with x (N,C,H,W) float32 and y labels")
    p.add_argument("-T", type=int, default=32)
    p.add_argument("--batch", type=int, default=50, help="batch size (default 50; sinabs needs it to divide N)")
    p.add_argument("--limit", type=int, default=None, help="first N images only")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--reference", help="onnx2snn's predicted classes (.npy from --predictions-out)")
    p.add_argument("--predictions-out", help="with --reader onnx2snn: save its predicted classes here")
    args = p.parse_args(argv)

    import torch
    torch.set_num_threads(args.threads)
    d = np.load(args.data)
    x, y = d["x"].astype(np.float32), d["y"].astype(np.int64)
    if args.limit:
        x, y = x[:args.limit], y[:args.limit]
    ref = np.load(args.reference) if args.reference else None
    m = machine(args.reader, args.threads)
    out = {"reader": args.reader, "reader_version": m["reader_version"], "nir_file": os.path.abspath(args.nir),
           "machine": m, "machine_line": machine_line(m)}
    log(out["machine_line"])
    try:
        globals()["run_" + args.reader](args, x, y, ref, out)
    except Exception as e:
        log(traceback.format_exc())
        out["fatal"] = first_line(e)
    print(json.dumps(out, default=str))
    return 0 if "fatal" not in out else 1


if __name__ == "__main__":
    sys.exit(main())
