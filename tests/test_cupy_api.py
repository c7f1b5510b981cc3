"""The CuPy stand-in is held to the real CuPy: every CuPy name tinynet uses exists in the real module.

The stand-in (tests/cupy_standin.py) runs the GPU path on the CPU, but it cannot tell whether the
names it offers are CuPy's: a function the stand-in invented, or a keyword argument the real
function lacks, would pass every emulated test and fail on the first real GPU. Real CuPy imports
on a machine without a GPU (it fails only when it allocates or launches), so this file checks,
without a GPU:

- every name the stand-in presents as `cupy...` (its modules, classes, functions, constants and
  the methods of its classes) exists at the same place in the real CuPy, and every parameter of a
  stand-in function is one the real function takes, at the same position when positional;
- every `cupy...` name that tinynet/backends/cupy_gpu.py and tinynet/distributed/ use, found by
  reading their source (including the methods of objects they make from a CuPy class, such as the
  NCCL communicator), exists in the real CuPy, with the keyword arguments they pass.

Signatures come from `inspect.signature` or, for CuPy's Cython functions, from the signature
Cython writes as the first line of the docstring; where neither exists, the test skips that
keyword check and says so. NCCL's names are checked where CuPy can load libnccl (`pip install
nvidia-nccl-cu13`; .ci/run installs it), and skip with the reason elsewhere.
"""
import ast
import importlib
import inspect
import re
import types
from pathlib import Path

import pytest

cupy = pytest.importorskip("cupy", reason="real CuPy is not installed (pip install cupy-cuda13x; .ci/run does)")

import cupy_standin  # noqa: E402  (tests/ is on sys.path under pytest)

ROOT = Path(__file__).resolve().parent.parent
# The files whose CuPy names must exist in the real module.
USERS = [ROOT / "tinynet" / "backends" / "cupy_gpu.py", *sorted((ROOT / "tinynet" / "distributed").glob("*.py"))]

# Names of tests/cupy_standin.py that are the stand-in's own machinery, not CuPy's. Everything
# else it defines without a leading underscore is presented as `cupy.<name>` and must be CuPy's.
STANDIN_MACHINERY = {"LaunchError", "translate", "build", "installed", "install", "HEADER", "CXX_FLAGS"}


# ================================================================= finding a name in real CuPy

def real_object(dotted):
    """The object the real CuPy has at 'cupy.a.b.c', or raise AttributeError naming the first
    missing part. Submodules are imported on the way (cupy.cuda.nccl is not imported by cupy)."""
    parts = dotted.split(".")
    obj = importlib.import_module(parts[0])
    for i, part in enumerate(parts[1:], start=1):
        if not hasattr(obj, part) and isinstance(obj, types.ModuleType):
            try:
                importlib.import_module(".".join(parts[:i + 1]))
            except ImportError:
                pass
        if not hasattr(obj, part):
            if inspect.isclass(obj) and i == len(parts) - 1 and _documented_attribute(obj, part):
                return _DocumentedAttribute(f"{'.'.join(parts)}, an instance attribute its docstring lists")
            raise AttributeError(f"{'.'.join(parts[:i])} has no attribute {part!r}")
        obj = getattr(obj, part)
    return obj


class _DocumentedAttribute(str):
    """What real_object returns for an attribute a Cython class sets per instance (Stream.ptr)."""


def _documented_attribute(cls, name):
    """Whether a class's docstring lists `name` under Attributes (CuPy writes `~Stream.ptr (intptr_t):`):
    attributes set in a Cython constructor are not on the class, only on its instances."""
    for klass in cls.__mro__:
        doc = klass.__doc__ or ""
        block = doc.partition("Attributes:")[2]
        if re.search(rf"^\s*~?(?:\w+\.)?{re.escape(name)}\s*\(", block, re.MULTILINE):
            return True
    return False


_DOC_SIGNATURE = re.compile(r"^\s*(?:[\w.]+\.)?(\w+)\((.*)\)\s*(?:->.*)?$")


def _strip_c_types(params):
    """Cython's `str code=None, *, int rank` -> `code=None, *, rank`: a parameter's name is the last
    word before its default."""
    out, depth, current = [], 0, ""
    for ch in params + ",":
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            head, eq, default = current.partition("=")
            words = head.split()
            name = words[-1] if words else ""
            if name.lstrip("*"):
                name = ("**" if name.startswith("**") or head.strip().startswith("**") else
                        "*" if name.startswith("*") or head.strip().startswith("*") else "") + name.lstrip("*")
            out.append(name + ("=None" if eq else ""))
            current = ""
        else:
            current += ch
    return ", ".join(p for p in out if p)


def real_signature(obj):
    """inspect.signature of a real CuPy callable, else the one Cython embedded in its docstring,
    else None. For a class, the signature of its constructor."""
    try:
        return inspect.signature(obj)
    except (TypeError, ValueError):
        pass
    lines = (getattr(obj, "__doc__", None) or "").strip().splitlines()
    match = _DOC_SIGNATURE.match(lines[0]) if lines else None
    if not match:
        return None
    namespace = {}
    try:
        exec(f"def {match.group(1)}({_strip_c_types(match.group(2))}): pass", namespace)
    except SyntaxError:
        return None
    return inspect.signature(namespace[match.group(1)])


def _without_self(signature):
    params = list(signature.parameters.values())
    if params and params[0].name == "self":
        params = params[1:]
    return params


def signature_problems(where, standin, real):
    """What the stand-in's signature promises that the real one does not keep: a parameter name
    the real function lacks (unless it takes **kwargs), or a positional parameter at a position
    where the real one has another name."""
    problems = []
    real_params = _without_self(real)
    real_names = {p.name for p in real_params}
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in real_params)
    real_positional = [p for p in real_params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    takes_varargs = any(p.kind is p.VAR_POSITIONAL for p in real_params)
    for i, p in enumerate(_without_self(standin)):
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.kind is not p.POSITIONAL_ONLY and p.name not in real_names and not takes_kwargs:
            problems.append(f"{where}: the stand-in takes {p.name!r}, real CuPy's {where}{real} does not")
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            if i < len(real_positional):
                if real_positional[i].name != p.name and p.kind is not p.POSITIONAL_ONLY:
                    problems.append(f"{where}: the stand-in's positional parameter {i} is {p.name!r}, "
                                    f"real CuPy's is {real_positional[i].name!r} ({where}{real})")
            elif not takes_varargs and p.default is p.empty:
                problems.append(f"{where}: the stand-in's positional parameter {p.name!r} has no place "
                                f"in real CuPy's {where}{real}")
    return problems


# ================================================================= what the stand-in presents

def _is_standin_callable(value):
    return inspect.isfunction(value) or inspect.ismethod(value)


def standin_surface(modules=None):
    """{'cupy.x.y': stand-in object} for every public name the stand-in presents: module
    attributes, classes and their public methods. `modules` defaults to the stand-in's own."""
    modules = cupy_standin._modules() if modules is None else modules
    surface = {}
    for module_name, module in modules.items():
        surface[module_name] = module
        for name, value in vars(module).items():
            if name.startswith("_") or isinstance(value, types.ModuleType):
                continue
            if module is cupy_standin and (name in STANDIN_MACHINERY or getattr(value, "__module__", None)
                                           not in (None, cupy_standin.__name__, "numpy")):
                continue   # the file's own imports (np, Path, ...) are not CuPy's names
            surface[f"{module_name}.{name}"] = value
        if isinstance(module, types.ModuleType) and type(module) is not types.ModuleType:
            # a module made as a class (cupy.cuda.runtime, cupy.random): its methods are its functions
            for name, value in vars(type(module)).items():
                if not name.startswith("_"):
                    surface[f"{module_name}.{name}"] = getattr(module, name)
    for dotted, value in list(surface.items()):
        if inspect.isclass(value) and getattr(value, "__module__", None) == cupy_standin.__name__:
            for name, member in vars(value).items():
                if not name.startswith("_") or name == "__call__":
                    surface[f"{dotted}.{name}"] = member
    return surface


def _standin_signature(value):
    if isinstance(value, (staticmethod, classmethod)):
        value = value.__func__
    if isinstance(value, property) or not callable(value):
        return None
    if inspect.isclass(value):
        value = value.__init__
        if value is object.__init__:
            return None
    try:
        return inspect.signature(value)
    except (TypeError, ValueError):
        return None


def surface_problems(surface):
    """Each stand-in name missing from real CuPy, or whose signature real CuPy does not keep;
    and the names whose real signature cannot be seen (listed, not failed)."""
    missing, unseen = [], []
    for dotted, value in sorted(surface.items()):
        try:
            real = real_object(dotted)
        except AttributeError as err:
            missing.append(f"{dotted}: the stand-in has it, real CuPy does not ({err})")
            continue
        standin_sig = _standin_signature(value)
        if standin_sig is None or not [p for p in _without_self(standin_sig)
                                       if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]:
            continue   # it promises no parameter by name (NumPy pass-throughs take *args, **kwargs)
        real_sig = real_signature(real)
        if real_sig is None:
            unseen.append(dotted)
            continue
        missing += signature_problems(dotted, standin_sig, real_sig)
    return missing, unseen


# ================================================================= what tinynet's GPU code uses

class _CupyUses(ast.NodeVisitor):
    """Collects the `cupy...` names a file uses, with the keywords of each call. A name is bound
    to CuPy by `import cupy [as x]`, `from cupy.a import b [as x]`, `x = __import__("cupy")`,
    `x = cupy.a` (an alias), and `x = cupy.SomeClass(...)` (then `x.method` is the class's)."""

    def __init__(self):
        self.aliases = {}      # local name (or 'self.attr') -> dotted cupy path
        self.uses = {}         # dotted -> set of keywords passed
        self.lines = {}        # dotted -> first line it appears on

    def _dotted(self, node):
        parts = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if isinstance(node, ast.Name):
            base = node.id
        else:
            return None
        # 'self.nccl.allReduce': try the longest alias first ('self.nccl'), then the root name
        for k in range(len(parts), -1, -1):
            key = ".".join([base, *reversed(parts[k:])]) if k < len(parts) else base
            if key in self.aliases:
                return ".".join([self.aliases[key], *reversed(parts[:k])])
        return None

    def _note(self, dotted, node, keywords=()):
        self.uses.setdefault(dotted, set()).update(keywords)
        self.lines.setdefault(dotted, node.lineno)

    def visit_Import(self, node):
        for a in node.names:
            if a.name.split(".")[0] == "cupy":
                self.aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else "cupy"

    def visit_ImportFrom(self, node):
        if node.module and node.module.split(".")[0] == "cupy":
            for a in node.names:
                self.aliases[a.asname or a.name] = f"{node.module}.{a.name}"
                self._note(f"{node.module}.{a.name}", node)

    def visit_Assign(self, node):
        self.generic_visit(node)
        value = node.value
        target = None
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "__import__" \
                and value.args and isinstance(value.args[0], ast.Constant) and value.args[0].value == "cupy":
            target = "cupy"
        elif isinstance(value, ast.IfExp):   # xp = np if ... else __import__("cupy")
            for branch in (value.body, value.orelse):
                if isinstance(branch, ast.Call) and getattr(branch.func, "id", None) == "__import__":
                    target = "cupy"
        elif isinstance(value, (ast.Attribute, ast.Name)):
            target = self._dotted(value)
        elif isinstance(value, ast.Call):
            callee = self._dotted(value.func)
            if callee is not None:
                try:
                    target = callee if inspect.isclass(real_object(callee)) else None
                except AttributeError:
                    target = None
        if target is None:
            return
        for t in node.targets:
            if isinstance(t, ast.Name):
                self.aliases[t.id] = target
            elif isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name):
                self.aliases[f"{t.value.id}.{t.attr}"] = target

    def visit_Attribute(self, node):
        dotted = self._dotted(node)
        if dotted is not None:
            self._note(dotted, node)
            return    # the chain's inner parts are prefixes of this one
        self.generic_visit(node)

    def visit_Call(self, node):
        dotted = self._dotted(node.func)
        if dotted is not None:
            self._note(dotted, node, [k.arg for k in node.keywords if k.arg is not None])
        self.generic_visit(node)


def cupy_uses(path):
    """{'cupy.a.b': set of keywords} for the file at `path`, and the line each first appears on.
    Two passes, so that an alias made in one function is known in the functions before it."""
    tree = ast.parse(Path(path).read_text())
    visitor = _CupyUses()
    visitor.visit(tree)
    aliases = visitor.aliases
    visitor = _CupyUses()
    visitor.aliases = dict(aliases)
    visitor.visit(tree)
    return visitor.uses, visitor.lines


def _nccl_loads():
    try:
        from cupy.cuda import nccl
    except ImportError as err:
        return f"cupy.cuda.nccl does not import ({err})"
    if not getattr(nccl, "available", False):
        return "CuPy cannot load libnccl here (pip install nvidia-nccl-cu13; .ci/run installs it)"
    return None


def _uses():
    params = []
    for path in USERS:
        uses, lines = cupy_uses(path)
        for dotted, keywords in sorted(uses.items()):
            where = f"{path.relative_to(ROOT)}:{lines[dotted]}"
            marks = []
            if dotted.startswith("cupy.cuda.nccl"):
                reason = _nccl_loads()
                marks = [pytest.mark.skipif(reason is not None, reason=reason or "")]
            params.append(pytest.param(dotted, tuple(sorted(keywords)), where, id=f"{dotted}@{where}", marks=marks))
    return params


# ================================================================= the tests

def test_the_source_scan_finds_the_backends_cupy_names():
    """The scan is not vacuous: it finds the names the GPU backend is built on."""
    uses, _ = cupy_uses(ROOT / "tinynet" / "backends" / "cupy_gpu.py")
    for dotted in ("cupy.RawModule", "cupy.cuda.runtime.getDeviceCount", "cupy.empty",
                   "cupy.RawModule.get_function", "cupy._core._routines_linalg.set_compute_type"):
        assert dotted in uses, f"the scan of cupy_gpu.py missed {dotted}"
    assert "options" in uses["cupy.RawModule"] and "name_expressions" in uses["cupy.RawModule"]
    comm_uses, _ = cupy_uses(ROOT / "tinynet" / "distributed" / "comm.py")
    assert "cupy.cuda.nccl.NcclCommunicator.allReduce" in comm_uses
    assert real_object("cupy.cuda.Stream.ptr")   # documented, set per instance
    with pytest.raises(AttributeError):
        real_object("cupy.cuda.Stream.ptrr")


@pytest.mark.parametrize("dotted, keywords, where", _uses())
def test_every_cupy_name_tinynet_uses_exists_in_real_cupy(dotted, keywords, where):
    try:
        real = real_object(dotted)
    except AttributeError as err:
        pytest.fail(f"{where} uses {dotted}, which real CuPy {cupy.__version__} lacks: {err}")
    if not keywords:
        return
    signature = real_signature(real)
    if signature is None:
        pytest.skip(f"{dotted}: real CuPy shows no signature, so the keywords {keywords} are not checked")
    params = _without_self(signature)
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return
    unknown = [k for k in keywords if k not in {p.name for p in params}]
    assert not unknown, f"{where} passes {unknown} to {dotted}, whose real signature is {signature}"


def test_every_name_the_standin_presents_exists_in_real_cupy():
    surface = standin_surface()
    assert len(surface) > 100, "the stand-in's surface was not found"
    problems, _ = surface_problems(surface)
    assert not problems, "\n".join(problems)


def test_which_standin_signatures_real_cupy_does_not_show():
    """Said, not failed: the stand-in names whose real signature Python cannot see (their
    keywords are then trusted to the GPU run). The list must stay small and be about Cython."""
    _, unseen = surface_problems(standin_surface())
    for dotted in unseen:
        assert not inspect.isfunction(real_object(dotted)), f"{dotted} is a Python function: its signature is visible"
    if unseen:
        pytest.skip(f"{len(unseen)} stand-in names have no visible real signature: {', '.join(unseen)}")


def test_the_check_catches_an_invented_name_and_keyword():
    """A stand-in with a name CuPy lacks, or a parameter CuPy's function lacks, fails the check."""
    fake_runtime = types.ModuleType("cupy.cuda.runtime")
    fake_runtime.getDeviceCountt = lambda: 1                  # invented name
    fake = types.ModuleType("cupy")

    def empty(shape, dtype=float, order="C", pinned=False):   # invented keyword
        pass

    def zeros(dtype, shape):                                  # positions swapped
        pass
    fake.empty, fake.zeros = empty, zeros
    problems, _ = surface_problems(standin_surface({"cupy": fake, "cupy.cuda.runtime": fake_runtime}))
    text = "\n".join(problems)
    assert "cupy.cuda.runtime.getDeviceCountt" in text
    assert "'pinned'" in text
    assert "positional parameter 0 is 'dtype'" in text


def test_cython_signatures_are_read_from_the_docstring():
    """CuPy's Cython functions have no inspect signature: the embedded one is read instead."""
    signature = real_signature(cupy.RawModule)
    assert signature is not None and {"code", "options", "name_expressions"} <= set(signature.parameters)
    assert _strip_c_types("self, intptr_t sendbuf, size_t count, NcclConfig config=None") == \
        "self, sendbuf, count, config=None"
