"""tinygrad_ed/graph.py: the autograd graph as DOT text, modules collapsed, rendering; and the two torch-like hooks it
stands on, Tensor.retain_grad and Module.register_forward_hook / named_modules."""
import html
import os
import re
import shutil
import stat
import sys

import numpy as np
import pytest

from gpt import GPT, GPTConfig
from tinygrad_ed import Tensor, graph
from tinygrad_ed.graph import record_modules, render, to_dot, trace
from tinygrad_ed.nn import Linear, Module

NODE = re.compile(r"^  (\w+) \[tooltip=(\"(?:[^\"\\]|\\.)*\"), label=<(.*)>\];$", re.MULTILINE)
EDGE = re.compile(r"^  (\w+) -> (\w+);$", re.MULTILINE)


def parse_dot(dot):
    """{node id: its label's lines as plain text}, [(from id, to id)] of the DOT text to_dot writes."""
    nodes = {}
    for node_id, _, label in NODE.findall(dot):
        lines = re.findall(r"<td>(.*?)</td>", label)
        nodes[node_id] = [html.unescape(re.sub(r"</?b>", "", line)) for line in lines]
    return nodes, EDGE.findall(dot)


def tiny_gpt_graph(seed=0, backward=True):
    model = GPT(GPTConfig(vocab_size=65, n_layer=2, n_head=2, n_embd=16, block_size=8), seed=seed)
    generator = np.random.default_rng(seed)
    X, Y = (Tensor(generator.integers(0, 65, size=(2, 8))) for _ in range(2))
    with record_modules(model) as calls:
        _, loss = model(X, Y)
    traced = trace(loss, model, modules=calls)
    if backward:
        loss.backward()
    return model, loss, traced


# ---- the hooks the drawing stands on ----

def test_retain_grad_keeps_a_non_leaf_gradient():
    w = Tensor(np.float64(2.0), requires_grad=True)
    y = w * 3.0                   # read twice below: ∂loss/∂y = 2z + 1 = 13, the sum over both uses
    y.retain_grad()
    z = y * 1.0                   # not retained: stays None, as in PyTorch
    loss = z * z + y
    loss.backward()
    assert y.grad == pytest.approx(13.0) and w.grad == pytest.approx(39.0) and z.grad is None
    with pytest.raises(RuntimeError, match="does not require grad"):
        Tensor(1.0).retain_grad()


def test_forward_hooks_see_every_call_can_replace_the_output_and_come_off():
    layer = Linear(3, 2, generator=np.random.default_rng(0))
    seen = []
    handle = layer.register_forward_hook(lambda module, args, output: seen.append((module, args, output)))
    x = Tensor(np.ones((1, 3), dtype=np.float32))
    out = layer(x)
    assert len(seen) == 1 and seen[0][0] is layer and seen[0][1][0] is x and seen[0][2] is out
    replacing = layer.register_forward_hook(lambda module, args, kwargs, output: output * 0.0, with_kwargs=True)
    assert np.all(layer(x).numpy() == 0) and len(seen) == 2
    handle.remove(), replacing.remove(), replacing.remove()   # removing twice is harmless, as torch's handle
    assert np.all(layer(x).numpy() == out.numpy()) and len(seen) == 2 and "_forward_hooks" not in vars(layer)
    later = layer.register_forward_hook(lambda module, args, output: seen.append("later"))
    handle.remove()                                          # a stale handle leaves a later hook on
    layer(x)
    assert seen[-1] == "later"
    later.remove()
    with pytest.raises(TypeError, match="callable"):
        layer.register_forward_hook("not a function")


def test_named_modules_names_every_module_once_as_named_parameters_does():
    model = GPT(GPTConfig(vocab_size=65, n_layer=2, n_head=2, n_embd=16, block_size=8))
    named = dict(model.named_modules())
    assert named[""] is model and named["transformer.h.1.attn.c_attn"] is model.transformer.h[1].attn.c_attn
    assert len(named) == len(list(model.modules()))
    owners = {name.rsplit(".", 1)[0] for name, _ in model.named_parameters()}
    assert owners <= set(named)   # each parameter's dotted prefix is a module's name


# ---- the DOT text ----

def small_graph():
    rng = np.random.default_rng(1)
    a = Tensor(rng.standard_normal((3, 4)), requires_grad=True)
    b = Tensor(rng.standard_normal((4, 2)), requires_grad=True)
    h = (a @ b).tanh()
    loss = (h * h).mean() + (a * 2.0).sum()
    return a, b, h, loss


def test_every_node_backward_walks_is_drawn_with_its_op_and_its_inputs_as_edges():
    a, b, h, loss = small_graph()
    walked = loss._topological_order()
    traced = trace(loss)
    nodes, edges = parse_dot(traced.to_dot())
    by_tensor = {id(node.tensor): f"n{node.index}" for node in traced.nodes}
    assert all(id(tensor) in by_tensor for tensor in walked)
    expected_edges = set()
    for tensor in walked:
        if tensor._ctx is None:
            assert nodes[by_tensor[id(tensor)]][0] == "parameter"
            continue
        assert nodes[by_tensor[id(tensor)]][0] == type(tensor._ctx).__name__
        expected_edges |= {(by_tensor[id(parent)], by_tensor[id(tensor)]) for parent in tensor._ctx.inputs}
    assert set(edges) == expected_edges and len(edges) == len(expected_edges)
    constants = [node_id for node_id, lines in nodes.items() if lines[0] == "constant"]
    assert len(nodes) == len(walked) + len(constants) and len(constants) >= 1   # the 2.0 of a * 2.0, drawn grey
    assert "(3, 4) float64" in nodes[by_tensor[id(a)]]


def test_after_backward_each_node_shows_its_gradient():
    a, b, h, loss = small_graph()
    traced = trace(loss, {"a": a, "b": b, "h": h})
    before, _ = parse_dot(traced.to_dot())
    assert not any(line.startswith("grad") for lines in before.values() for line in lines)
    loss.backward()
    nodes, _ = parse_dot(traced.to_dot())
    labels = {lines[0]: lines for lines in nodes.values()}
    # ∂loss/∂h = 2h / 6 (the mean over 6 elements), computed here from h's value, not from the engine
    expected = 2 * h.numpy() / 6
    assert f"grad mean {graph._number(expected.mean())} std {graph._number(expected.std())}" in labels["h"]
    assert f"min {graph._number(expected.min())} max {graph._number(expected.max())}" in labels["h"]
    assert "grad 1.0" in nodes[f"n{traced.nodes[-1].index}"]          # ∂loss/∂loss = 1, the chapter's start
    assert labels["a"][1] == "parameter, (3, 4) float64"
    assert f"grad mean {graph._number(a.grad.mean())} std {graph._number(a.grad.std())}" in labels["a"]


def test_a_model_names_its_parameters():
    model, loss, traced = tiny_gpt_graph()
    nodes, _ = parse_dot(traced.to_dot())
    headers = [lines[0] for lines in nodes.values()]
    for name, _ in model.named_parameters():
        assert headers.count(name) == 1, name
    assert "lm_head.weight" not in headers                              # tied: drawn once, under its first name


def test_collapsing_by_block_draws_fewer_nodes_with_consistent_edges():
    model, loss, traced = tiny_gpt_graph()
    full, full_edges = parse_dot(traced.to_dot())
    nodes, edges = parse_dot(traced.to_dot(depth=2))
    assert len(nodes) < len(full) // 4
    headers = {lines[0]: node_id for node_id, lines in nodes.items()}
    for name in ("transformer.wte", "transformer.wpe", "transformer.h.0", "transformer.h.1", "transformer.ln_f",
                 "lm_head"):
        assert name in headers, name
    # each node is drawn inside the box of its group, each edge drawn is an edge of the full graph between two boxes,
    # and each such edge is drawn, once
    group_of = traced.groups(2)
    dot_id = traced.dot_ids(group_of)
    assert all(nodes[dot_id[index]][0] == name for index, name in group_of.items())
    assert all(dot_id[node.index] == f"n{node.index}" for node in traced.nodes if node.index not in group_of)
    as_drawn = {f"n{node.index}": dot_id[node.index] for node in traced.nodes}
    expected = {(as_drawn[a], as_drawn[b]) for a, b in full_edges if as_drawn[a] != as_drawn[b]}
    assert set(edges) == expected and len(edges) == len(expected)
    h0, h1 = headers["transformer.h.0"], headers["transformer.h.1"]
    assert (h0, h1) in edges and (h1, h0) not in edges                   # the residual stream flows h.0 → h.1
    block_parameters = [p for name, p in model.named_parameters() if name.startswith("transformer.h.0.")]
    assert f"Block: {sum(1 for i in group_of if group_of[i] == 'transformer.h.0' and traced.nodes[i].inputs)} ops, " \
           f"{len(block_parameters)} parameters ({sum(p.size for p in block_parameters):,} numbers)" in nodes[h0]
    assert "reads transformer.wte.weight" in nodes[headers["lm_head"]]   # the tied weight, owned by wte
    assert traced.nodes[-1].index not in group_of                         # the loss: the model's own op, drawn alone
    assert sum(line.startswith("grad mean") for line in nodes[h0]) == 1   # the block output's ∂loss/∂output


def test_depth_0_is_one_node_and_deeper_draws_more():
    _, _, traced = tiny_gpt_graph(backward=False)
    nodes, edges = parse_dot(traced.to_dot(depth=0))
    assert len(nodes) == 1 and not edges and next(iter(nodes.values()))[0] == "GPT"
    counts = [len(parse_dot(traced.to_dot(depth=depth))[0]) for depth in (2, 3, 4)]
    assert counts[0] < counts[1] < counts[2] < len(parse_dot(traced.to_dot())[0])


def test_record_modules_takes_its_hooks_off_even_after_an_error():
    model = GPT(GPTConfig(vocab_size=65, n_layer=1, n_head=1, n_embd=8, block_size=4))
    with pytest.raises(ValueError, match="exceeds block_size"):
        with record_modules(model):
            model(Tensor(np.zeros((1, 5), dtype=np.int64)))
    assert all("_forward_hooks" not in vars(module) for module in model.modules())   # as before: nothing left


def test_labels_are_escaped_for_dot():
    w = Tensor(np.float64(1.0), requires_grad=True)
    loss = w * 2.0
    tricky = 'a"b<c>&\\d\nnext'
    dot = to_dot(loss, {tricky: w}, title='<the "title">')
    assert 'tooltip="a\\"b<c>&\\\\d\\nnext"' in dot                      # DOT string: \" \\ \n
    assert "a&quot;b&lt;c&gt;&amp;\\d<br/>next" in dot                  # HTML-like label: entities
    assert "label=<&lt;the &quot;title&quot;&gt;>" in dot
    assert "<c>" not in dot.replace('tooltip="a\\"b<c>', "")


def test_bad_input_is_a_clear_error():
    w = Tensor(np.float64(1.0), requires_grad=True)
    with pytest.raises(TypeError, match="needs a Tensor"):
        trace(np.float64(1.0))
    with pytest.raises(ValueError, match="does not require grad"):
        trace(Tensor(1.0) * 2.0)
    with pytest.raises(TypeError, match="names must be a model"):
        trace(w * 2.0, names=["w"])
    with pytest.raises(TypeError, match=r"names\['w'\] must be a Tensor"):
        trace(w * 2.0, names={"w": 1.0})
    with pytest.raises(TypeError, match="record_modules"):
        trace(w * 2.0, modules=["h.0"])
    with pytest.raises(TypeError, match="record_modules needs a Module"):
        with record_modules({"w": w}):
            pass
    loss = w * 2.0
    traced = trace(loss)
    with pytest.raises(ValueError, match="record_modules"):
        traced.to_dot(depth=1)                                          # no modules recorded
    loss.backward()
    with pytest.raises(RuntimeError, match="before loss.backward"):
        trace(loss)
    _, _, gpt_graph = tiny_gpt_graph(backward=False)
    for depth in (-1, 1.5, True):
        with pytest.raises(ValueError, match="depth must be an integer >= 0"):
            gpt_graph.to_dot(depth=depth)


# ---- rendering ----

def test_render_writes_dot_text_and_refuses_unknown_extensions_before_writing(tmp_path):
    dot = to_dot(Tensor(np.float64(1.0), requires_grad=True) * 2.0)
    assert render(dot, tmp_path / "sub" / "g.dot") == tmp_path / "sub" / "g.dot"
    assert (tmp_path / "sub" / "g.dot").read_text(encoding="utf-8") == dot
    with pytest.raises(ValueError, match=r"extension must be one of \.dot, \.gv, \.svg, \.png"):
        render(dot, tmp_path / "g.jpg")
    with pytest.raises(TypeError, match="DOT text"):
        render(b"digraph {}", tmp_path / "g.dot")
    assert not (tmp_path / "g.jpg").exists()


def test_a_picture_without_graphviz_says_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setattr(graph.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="apt install graphviz.*or write a .dot file"):
        render("digraph {}", tmp_path / "g.svg")
    assert not (tmp_path / "g.svg").exists()


def fake_dot(tmp_path, monkeypatch, script):
    """A `dot` program on PATH that runs `script` (Python): what render hands Graphviz, seen without Graphviz."""
    folder = tmp_path / "bin"
    folder.mkdir()
    program = folder / "dot"
    program.write_text(f"#!{sys.executable}\nimport sys\n{script}\n")
    program.chmod(program.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")


@pytest.mark.skipif(os.name == "nt", reason="the fake dot is a #! script")
def test_render_hands_the_text_to_dot_with_the_format_and_the_path(tmp_path, monkeypatch):
    fake_dot(tmp_path, monkeypatch, "open(sys.argv[3], 'w').write(' '.join(sys.argv[1:3]) + '|' + sys.stdin.read())")
    render("digraph { a -> b }", tmp_path / "g.png")
    assert (tmp_path / "g.png").read_text() == "-Tpng -o|digraph { a -> b }"


@pytest.mark.skipif(os.name == "nt", reason="the fake dot is a #! script")
def test_a_dot_failure_is_an_error_with_its_message(tmp_path, monkeypatch):
    fake_dot(tmp_path, monkeypatch, "sys.stderr.write('syntax error in line 1'); sys.exit(1)")
    with pytest.raises(RuntimeError, match="could not draw.*syntax error in line 1"):
        render("digraph {", tmp_path / "g.svg")


needs_graphviz = pytest.mark.skipif(shutil.which("dot") is None, reason="needs Graphviz's dot: apt install graphviz")


@needs_graphviz
def test_graphviz_draws_the_gpt_graph_as_svg_and_png(tmp_path):
    _, _, traced = tiny_gpt_graph()
    dot = traced.to_dot(depth=2, title="tiny GPT")
    render(dot, tmp_path / "g.svg")
    render(dot, tmp_path / "g.png")
    svg = (tmp_path / "g.svg").read_text(encoding="utf-8")
    assert "<svg" in svg and "transformer.h.1" in svg
    assert (tmp_path / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_model_without_modules_still_traces():
    class Square(Module):
        def __init__(self):
            self.w = Tensor(np.float64(3.0), requires_grad=True)

        def forward(self, x):
            return (self.w * x) ** 2

    square = Square()
    with record_modules(square) as calls:
        loss = square(2.0)
    nodes, edges = parse_dot(trace(loss, square, modules=calls).to_dot(depth=0))
    assert [lines[0] for lines in nodes.values()] == ["Square"] and not edges
    assert "value 36.0" in next(iter(nodes.values()))
