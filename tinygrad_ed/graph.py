"""The autograd graph, drawn: what loss.backward() walks, as Graphviz DOT text (chapter part 3, step 3).

The chapter draws backpropagation as a chain, X → w1 → h1 → w2 → h2 → w3 → output → loss, and walks it back
from ∂loss/∂loss = 1. `trace` takes that graph from any tensor (the nodes `Tensor._topological_order` gives backward,
plus the inputs that need no gradient, drawn grey), and `Graph.to_dot` writes it as DOT text, with no dependency:
each node shows the op that made it, its name where a model or a dict names it, its shape and dtype, a short summary
of its value and, after backward, its gradient ∂loss/∂node. `render` writes the text to a .dot file, or runs
Graphviz's `dot` program (apt install graphviz) for an .svg or .png picture.

    graph = trace(loss, model)           before backward(): backward frees the graph it walks
    loss.backward()                      trace asked every node to keep its gradient (Tensor.retain_grad)
    render(graph.to_dot(), "graph.svg")

A GPT's graph has hundreds of nodes. Recording which module made which node during the forward pass (through
Module.register_forward_hook; the model's code is unchanged) lets `to_dot(depth=...)` draw each module at that depth
of the module tree as one node, its parameters and ops inside it:

    with record_modules(model) as calls:
        logits, loss = model(X, Y)
    graph = trace(loss, model, modules=calls)
    loss.backward()
    graph.to_dot(depth=2)                one node per transformer block (GPT → transformer → h.N)
"""
import contextlib
import math
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinygrad_ed.device import to_device
from tinygrad_ed.tensor import _FREED, Tensor

# what a path's extension asks render for: None is the DOT text itself, else the format Graphviz's `dot -T` writes
FORMATS = {".dot": None, ".gv": None, ".svg": "svg", ".png": "png"}

# fill colours: parameters blue as in most drawings of a network, the data grey, the loss yellow, modules green
COLOURS = {"parameter": "#dbe9f6", "constant": "#eeeeee", "op": "#ffffff", "root": "#fff2b3", "module": "#dff0d8"}


@dataclass
class GraphNode:
    """One tensor of the graph. `inputs` are the indices of the nodes its op read (empty for a leaf)."""
    index: int
    tensor: Tensor
    op: str                      # the Function that made it; "parameter" for a leaf with a gradient; "constant"
    inputs: list = field(default_factory=list)
    name: str = None             # from the model's parameter names or the names dict

    @property
    def constant(self):
        return self.op == "constant"


@dataclass
class ModuleCall:
    """One module's forward, as record_modules saw it: the tensors that went in and came out."""
    name: str                    # dotted, as named_modules gives it ("" for the model itself)
    depth: int                   # levels below the model: GPT 0, transformer 1, transformer.h.0 2, its attn 3
    kind: str                    # the module's class name
    has_children: bool
    inputs: list
    outputs: list


@contextlib.contextmanager
def record_modules(model):
    """Within the block, note every call of `model` or one of its sub-modules (a list of ModuleCall, yielded):
    what `Graph.to_dot(depth=...)` needs to draw a module as one node. The hooks come off when the block ends."""
    if not callable(getattr(model, "named_modules", None)):
        raise TypeError(f"record_modules needs a Module (with named_modules()), got {type(model).__name__}")
    modules = dict(model.named_modules())
    calls, handles = [], []

    def depth_of(name):  # one level per module on the way down; a list's items ("h.0") are one level, as _children
        if name == "":
            return 0
        parent = name
        while "." in parent:
            parent = parent.rsplit(".", 1)[0]
            if parent in modules:
                return depth_of(parent) + 1
        return 1

    def hook_for(name, module):
        depth, kind, has_children = depth_of(name), type(module).__name__, len(list(module.named_modules())) > 1

        def hook(module, args, kwargs, output):
            calls.append(ModuleCall(name, depth, kind, has_children, _tensors_in((args, kwargs)), _tensors_in(output)))
        return hook

    try:
        for name, module in modules.items():
            handles.append(module.register_forward_hook(hook_for(name, module), with_kwargs=True))
        yield calls
    finally:
        for handle in handles:
            handle.remove()


def _tensors_in(value):
    """The Tensors in a forward's arguments or output: a tensor, or tuples, lists and dicts of them."""
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (tuple, list)):
        return [tensor for item in value for tensor in _tensors_in(item)]
    return []


def trace(tensor, names=None, modules=None):
    """The graph backward() walks from `tensor`, as a Graph to draw; call it before backward(), which frees the graph.

    names    a model (anything with named_parameters()) or a dict {name: Tensor}: those tensors are drawn with their
             names; a dict may name any node (y_pred, loss), not only parameters
    modules  the list record_modules yielded for the forward pass that made `tensor`: needed by to_dot(depth=...)
    Every node that is not a leaf is asked to keep its gradient (retain_grad), so that after backward() the drawing
    shows ∂loss/∂node for each; it costs one gradient array per node, as long as the Graph lives.
    """
    if not isinstance(tensor, Tensor):
        raise TypeError(f"trace needs a Tensor (typically the loss), got {type(tensor).__module__}."
                        f"{type(tensor).__name__}")
    if tensor._ctx is _FREED:
        raise RuntimeError("trace: backward() already walked this graph and freed it; call trace(loss) before "
                           "loss.backward() (the drawing then shows every gradient)")
    if not tensor.requires_grad:
        raise ValueError("trace: the tensor does not require grad, so backward() has no graph to walk (no parameter "
                         "it depends on has requires_grad=True, or it was computed under no_grad())")
    if modules is not None and not (isinstance(modules, list) and all(isinstance(c, ModuleCall) for c in modules)):
        raise TypeError("trace: modules must be the list that `with record_modules(model) as calls:` yields")
    names_by_id = {id(value): name for name, value in _named_tensors(names).items()}

    nodes, index_of = [], {}

    def add(node_tensor, op):
        index_of[id(node_tensor)] = len(nodes)
        nodes.append(GraphNode(len(nodes), node_tensor, op, name=names_by_id.get(id(node_tensor))))

    for node in tensor._topological_order():  # backward's own walk: inputs before the ops that read them
        ctx = node._ctx
        parents = [] if ctx is None else list(ctx.inputs)
        for parent in parents:
            if id(parent) not in index_of:    # not walked by backward: needs no gradient
                add(parent, "constant")
        add(node, "parameter" if ctx is None else _op_name(ctx))
        nodes[-1].inputs = [index_of[id(parent)] for parent in parents]
        if ctx is not None:
            node.retain_grad()
    return Graph(nodes, modules or [])


def _named_tensors(names):
    if names is None:
        return {}
    if callable(getattr(names, "named_parameters", None)):
        return dict(names.named_parameters())
    if not isinstance(names, dict):
        raise TypeError(f"names must be a model (with named_parameters()) or a dict {{name: Tensor}}, got "
                        f"{type(names).__name__}")
    for name, value in names.items():
        if not isinstance(value, Tensor):
            raise TypeError(f"names[{name!r}] must be a Tensor, got {type(value).__name__}")
    return {str(name): value for name, value in names.items()}


def _op_name(ctx):
    if ctx is _FREED:
        return "freed by backward()"
    name = type(ctx).__name__
    exponent = getattr(ctx, "exponent", None)   # Pow's constant exponent: the chapter's (y_pred − y)²
    return f"{name} ** {float(exponent):g}" if exponent is not None else name


def to_dot(tensor, names=None, modules=None, depth=None, title=None):
    """trace(tensor, names, modules).to_dot(depth, title) in one call (before backward: values, no gradients)."""
    return trace(tensor, names, modules).to_dot(depth=depth, title=title)


class Graph:
    """A traced graph: `nodes` in topological order (GraphNode), `edges` (input index, node index) as backward's
    chain rule follows them in reverse, and the module calls recorded with it."""

    def __init__(self, nodes, calls):
        self.nodes, self.calls = nodes, calls
        self.edges = [(parent, node.index) for node in nodes for parent in node.inputs]

    def groups(self, depth):
        """{node index: name of the module it is drawn inside} at `depth`: each module at that depth, and each module
        without sub-modules above it, is one group; a node belongs to the outermost such module whose forward made it
        (a node made after the module's inputs and before its outputs)."""
        if depth is None:
            return {}
        if not isinstance(depth, (int, np.integer)) or isinstance(depth, bool) or depth < 0:
            raise ValueError(f"depth must be an integer >= 0 (0 draws the whole model as one node) or None, got "
                             f"{depth!r}")
        if not self.calls:
            raise ValueError("depth needs to know which module made which node: run the forward pass inside "
                             "`with record_modules(model) as calls:` and trace(loss, model, modules=calls)")
        index_of = {id(node.tensor): node.index for node in self.nodes}
        group_of, depth_of = {}, {}
        for call in self.calls:
            if not (call.depth == depth or (call.depth < depth and not call.has_children)):
                continue
            inside = self._made_between([index_of[id(t)] for t in call.inputs if id(t) in index_of],
                                        [index_of[id(t)] for t in call.outputs if id(t) in index_of])
            for index in inside:
                if depth_of.get(index, math.inf) > call.depth:   # the outermost module wins
                    group_of[index], depth_of[index] = call.name or call.kind, call.depth
        return group_of

    def _made_between(self, inputs, outputs):
        """The nodes the outputs depend on that the inputs do not: what the module's forward made."""
        before = self._ancestors(inputs)
        return self._ancestors(outputs, stop=before)

    def _ancestors(self, starts, stop=frozenset()):
        seen, stack = set(), [index for index in starts if index not in stop]
        while stack:
            index = stack.pop()
            if index in seen:
                continue
            seen.add(index)
            stack.extend(parent for parent in self.nodes[index].inputs if parent not in stop and parent not in seen)
        return seen

    def to_dot(self, depth=None, title=None, rankdir="LR"):
        """The graph as Graphviz DOT text. depth: None draws every op; an integer draws each module at that depth
        (and each module without sub-modules above it) as one node, see groups(). rankdir "LR" draws the chapter's
        chain left to right, "TB" top to bottom."""
        if rankdir not in ("LR", "TB", "RL", "BT"):
            raise ValueError(f"rankdir must be 'LR', 'TB', 'RL' or 'BT', got {rankdir!r}")
        group_of = self.groups(depth)
        node_id, group_names = self.dot_ids(group_of), self._group_names(group_of)
        root = self.nodes[-1].index

        lines = ["digraph autograd {",
                 f'  graph [rankdir={rankdir}, fontname="Helvetica", labelloc=t, label=<{_html(title or "")}>];',
                 '  node [shape=plaintext, fontname="Helvetica", fontsize=10];',
                 '  edge [color="#555555", arrowsize=0.7];']
        for node in self.nodes:
            if node.index not in group_of:
                lines.append(f"  {node_id[node.index]} [tooltip={_quoted(node.name or node.op)}, "
                             f"label=<{self._node_label(node, node.index == root)}>];")
        for k, name in enumerate(group_names):
            label = self._group_label(name, [node for node in self.nodes if group_of.get(node.index) == name], root)
            lines.append(f"  m{k} [tooltip={_quoted(name)}, label=<{label}>];")
        edges = dict.fromkeys((node_id[parent], node_id[child]) for parent, child in self.edges
                              if node_id[parent] != node_id[child])
        lines.extend(f"  {parent} -> {child};" for parent, child in edges)
        lines.append("}")
        return "\n".join(lines) + "\n"

    def dot_ids(self, group_of):
        """{node index: its id in the DOT text}: n<index> for a node drawn alone, m<k> for the k-th module drawn as
        one node (group_of as groups() gives it)."""
        k = {name: k for k, name in enumerate(self._group_names(group_of))}
        return {node.index: f"m{k[group_of[node.index]]}" if node.index in group_of else f"n{node.index}"
                for node in self.nodes}

    def _group_names(self, group_of):
        """The modules drawn as one node each, in the order their first nodes were made."""
        return list(dict.fromkeys(group_of[node.index] for node in self.nodes if node.index in group_of))

    def _node_label(self, node, is_root):
        kind = "root" if is_root else "constant" if node.constant else "parameter" if node.op == "parameter" else "op"
        header = _html(node.name) if node.name else _html(node.op)
        rows = [f"{node.op}, {_shape_and_dtype(node.tensor)}" if node.name else _shape_and_dtype(node.tensor)]
        rows += _summary("value", node.tensor.numpy())
        if node.tensor.grad is not None:
            rows += _summary("grad", to_device(node.tensor.grad, "cpu"))
        return _table(header, rows, COLOURS[kind], dashed=node.constant)

    def _group_label(self, name, members, root):
        """A module drawn as one node: its kind, how many ops and parameters it holds, and its output (the last of
        its nodes that something outside it reads), with the output's value and gradient."""
        inside = {node.index for node in members}
        read_outside = {parent for parent, child in self.edges if parent in inside and child not in inside}
        output = [node for node in members if node.index in read_outside or node.index == root][-1:]
        kinds = {call.kind for call in self.calls if (call.name or call.kind) == name}
        ops = sum(1 for node in members if node.inputs)
        parameters = [node.tensor for node in members if node.op == "parameter"]
        rows = [f"{'/'.join(sorted(kinds))}: {ops} op{'s' * (ops != 1)}, {len(parameters)} parameters "
                f"({sum(p.size for p in parameters):,} numbers)"]
        # a parameter it reads but another module owns (a tied weight: lm_head reads transformer.wte.weight)
        borrowed = dict.fromkeys(self.nodes[parent].name or "a parameter" for parent, child in self.edges
                                 if child in inside and parent not in inside and self.nodes[parent].op == "parameter")
        rows += [f"reads {name}" for name in borrowed]
        if output:
            tensor = output[0].tensor
            rows += ["output " + _shape_and_dtype(tensor)] + _summary("value", tensor.numpy())
            if tensor.grad is not None:
                rows += _summary("grad", to_device(tensor.grad, "cpu"))
        return _table(_html(name), rows, COLOURS["module"])


# ----------------------------------------------------------------------------------------------------------
# labels: Graphviz's HTML-like labels, every piece of text escaped

def _table(header, rows, colour, dashed=False):
    """A box: `header` (escaped already) in bold, then one line per row of plain text."""
    style = ' style="dashed"' if dashed else ""
    cells = "".join(f"<tr><td>{_html(row)}</td></tr>" for row in rows)
    return (f'<table border="1" cellborder="0" cellspacing="0" cellpadding="3" bgcolor="{colour}"{style}>'
            f"<tr><td><b>{header}</b></td></tr>{cells}</table>")


def _html(text):
    """Text for an HTML-like label: & < > and " are markup there."""
    return (str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;").replace("\n", "<br/>"))


def _quoted(text):
    """A DOT double-quoted string: backslashes and quotes escaped, line breaks as \\n."""
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _shape_and_dtype(tensor):
    shape = "scalar" if tensor.ndim == 0 else "(" + ", ".join(str(n) for n in tensor.shape) + ")"
    return f"{shape} {tensor.dtype}"


def _summary(what, array):
    """Label lines: `what` and the value of a one-element array, else its mean and std, then its min and max."""
    if array.size == 0:
        return [f"{what} empty"]
    values = np.asarray(array, dtype=np.float64)
    if values.size == 1:
        return [f"{what} {_number(values.item())}"]
    return [f"{what} mean {_number(values.mean())} std {_number(values.std())}",
            f"min {_number(values.min())} max {_number(values.max())}"]


def _number(value):
    """Short and exact where it can be: -3.0, 2.25, 0.5, 1.235e-05."""
    value = float(value)
    if math.isfinite(value) and value == round(value) and abs(value) < 1e6:
        return f"{value:.1f}"
    return f"{value:.4g}"


# ----------------------------------------------------------------------------------------------------------
# rendering

def output_format(path):
    """What render will write at `path`, from its extension (None: the DOT text); a clear error, before any work,
    for an extension it does not know or a picture without Graphviz's dot program."""
    extension = Path(path).suffix.lower()
    if extension not in FORMATS:
        raise ValueError(f"cannot draw a graph to {str(path)!r}: the extension must be one of "
                         f"{', '.join(FORMATS)} (.dot writes the DOT text, .svg and .png need Graphviz)")
    picture = FORMATS[extension]
    if picture is not None and shutil.which("dot") is None:
        raise RuntimeError(f"drawing {str(path)!r} needs Graphviz's dot program, which is not installed: apt install "
                           f"graphviz (brew install graphviz on macOS), or write a .dot file and render it elsewhere")
    return picture


def render(dot_text, path):
    """Write `dot_text` at `path`: .dot/.gv the text itself, .svg/.png a picture drawn by Graphviz's dot; returns
    the path."""
    if not isinstance(dot_text, str):
        raise TypeError(f"render needs the DOT text (a str, from Graph.to_dot), got {type(dot_text).__name__}")
    picture = output_format(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if picture is None:
        Path(path).write_text(dot_text, encoding="utf-8")
        return path
    result = subprocess.run([shutil.which("dot"), f"-T{picture}", "-o", str(path)], input=dot_text.encode("utf-8"),
                            capture_output=True, timeout=120)
    if result.returncode != 0:
        raise RuntimeError(f"Graphviz's dot could not draw {str(path)!r}: {result.stderr.decode(errors='replace')}")
    return path
