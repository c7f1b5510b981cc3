"""Unpickling files that may be hostile: the one restricted unpickler tinynet has.

Two readers use it: tn.load_torch (a .pth's data.pkl, tinynet/torch_io.py) and the CIFAR-10
batches (tinynet/data/cifar10.py). A pickle is a program for a small stack machine, and
`pickle.load` of a hostile one can run any command, crash or hang Python. Each way is closed here
before the first object is built:

    names   GLOBAL / STACK_GLOBAL import any name and REDUCE calls it. `find_class` answers only
            the reader's own table of harmless stand-ins (`allowed`); any other name is refused.
    shape   CPython hashes, compares and prints nested tuples by recursing in C: a dict key of
            10^6 nested 1-tuples overflows the C stack (SIGSEGV), and 80 levels of (x, x), each
            taken from the memo, make a hash of 2^80 tuples (it never ends). `scan` first walks the
            opcodes (pickletools.genops: nothing is built) and refuses nesting deeper than
            MAX_DEPTH, a value that expands to more objects than the pickle has bytes (without
            memo reuse every object costs at least one byte), a change to an object after the memo
            handed it out again (it would hide how deep or large the first copy is) and sets
            (their elements are hashed; neither reader's files hold one).
    size    each caller bounds the bytes it reads before reading them, and its stand-ins make
            no more than the file holds however often the memo hands them one value (a view
            or a string asked for again is not copied again).

Everything find_class hands out is immutable (or made fresh for each load): a hostile pickle can
BUILD (set attributes) on any object it reaches, and must not change what the next file loads.
"""
import io
import pickle
import pickletools

# A state_dict nests 5 levels (dict > tensor record > its arguments > size tuple > int), a CIFAR-10
# batch 5 (dict > array > its state > dtype > its state): 32 is far above both, and far below
# the depth at which CPython's recursion in C needs care.
MAX_DEPTH = 32

# Opcodes that change the object below them on the stack instead of making a new one.
_CHANGES = {"APPEND", "APPENDS", "SETITEM", "SETITEMS", "BUILD"}
_SETS = {"EMPTY_SET", "ADDITEMS", "FROZENSET"}
_PUTS = {"PUT", "BINPUT", "LONG_BINPUT"}
_GETS = {"GET", "BINGET", "LONG_BINGET"}
_OWN_WAY = _SETS | {"MARK", "MEMOIZE", "DUP", "POP"}  # the opcodes scan handles one by one


def _stack_effect(op):
    """(how many values an opcode takes below its MARK, whether it takes everything down to the
    last MARK, how many values it leaves): every opcode but DUP and MARK leaves at most one."""
    before = op.stack_before
    down_to_mark = pickletools.markobject in before
    if down_to_mark:
        before = before[:before.index(pickletools.markobject)]
    return len(before), down_to_mark, len(op.stack_after)


_STACK_EFFECTS = {op.name: _stack_effect(op) for op in pickletools.opcodes}


class UnsafePickleError(pickle.UnpicklingError, ValueError):
    """A pickle asks for something its kind of file never holds (and might run code, crash or
    hang): refused before anything runs. A ValueError too, as every other bad file is."""


def scan(data, what, holds):
    """Walk the opcodes of `data` without building anything; UnsafePickleError naming `what` (the
    file) for a shape that could crash or hang CPython (module docstring), pickle.UnpicklingError
    for a pickle that is damaged. `holds` says what such files hold ("a state_dict").

    Each value on the simulated stack is a list [depth, size, shared]: how deep it nests, how
    many objects it expands to, and whether the memo has handed it out more than once."""
    limit = max(len(data), 64)
    stack, marks, memo = [], [], {}

    def refuse(reason, pos):
        return UnsafePickleError(f"{what}: the pickle {reason} (at byte {pos}), which {holds} never "
                                 "does; refused before unpickling (such a pickle can crash or hang Python)")

    try:
        for op, arg, pos in pickletools.genops(data):
            name = op.name
            if name in _PUTS:
                memo[arg] = stack[-1]
                continue
            if name in _GETS:
                value = memo[arg]
                value[2] = True
                stack.append(value)
                continue
            if name in _OWN_WAY:
                if name in _SETS:
                    raise refuse("builds a set", pos)
                if name == "MARK":
                    marks.append(len(stack))
                elif name == "MEMOIZE":
                    memo[len(memo)] = stack[-1]
                elif name == "DUP":
                    stack[-1][2] = True
                    stack.append(stack[-1])
                elif marks and marks[-1] == len(stack):  # POP right after MARK drops the mark
                    marks.pop()
                else:
                    stack.pop()
                continue
            below, down_to_mark, leaves = _STACK_EFFECTS[name]
            if not below and not down_to_mark:  # an atom, or an empty container
                stack.extend([0, 1, False] for _ in range(leaves))
                continue
            parts = []
            if down_to_mark:
                start = marks.pop()
                parts = stack[start:]
                del stack[start:]
            if below:
                if len(stack) - below < (marks[-1] if marks else 0):
                    raise pickle.UnpicklingError("stack underflow")
                parts[:0] = stack[-below:]
                del stack[-below:]
            if name in _CHANGES:
                value = parts.pop(0)
                if value[2]:
                    raise refuse("changes an object after taking it from the memo again", pos)
            elif leaves:
                value = [0, 0, False]
            else:
                continue
            for depth, size, _ in parts:
                value[0] = max(value[0], depth + 1)
                value[1] += size
            if name not in _CHANGES:
                value[1] += 1
            if value[0] > MAX_DEPTH:
                raise refuse(f"nests values more than {MAX_DEPTH} levels deep", pos)
            if value[1] > limit:
                raise refuse(f"reuses memo entries until one value holds more than {limit} "
                             f"objects (its {len(data)} bytes could build at most as many)", pos)
            stack.append(value)
    except (ValueError, IndexError, KeyError) as err:  # genops: an unknown opcode or a cut; our stack
        if isinstance(err, UnsafePickleError):
            raise
        raise pickle.UnpicklingError(f"{what}: damaged pickle ({type(err).__name__}: {err})") from None
    except pickle.UnpicklingError as err:
        raise pickle.UnpicklingError(f"{what}: damaged pickle ({err})") from None


class Frozen:
    """A stand-in function whose attributes cannot be set (BUILD on it is refused)."""

    __slots__ = ("_fn",)

    def __init__(self, fn):
        object.__setattr__(self, "_fn", fn)

    def __setattr__(self, name, value):
        raise UnsafePickleError(f"the pickle tried to set {name!r} on {self._fn.__name__}; refused")

    def __call__(self, *args, **kwargs):
        return self._fn(*args, **kwargs)


class RestrictedUnpickler(pickle.Unpickler):
    """pickle.Unpickler that imports nothing and checks the pickle's shape first.

    data: the pickle's bytes (the caller bounded their number); allowed: {(module, name): stand-in};
    what: the file, as errors name it; holds: what such a file holds, as errors say it
    ("a state_dict"). Other keyword arguments go to pickle.Unpickler (encoding=...)."""

    def __init__(self, data, allowed, what, holds, **kwargs):
        super().__init__(io.BytesIO(data), **kwargs)
        self.data, self.allowed, self.what, self.holds = data, allowed, what, holds

    def find_class(self, module, name):
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self.what} asks for the global {module}.{name}, which {self.holds} never needs; "
                "refused (the file is a pickle, and a pickle can run any command)") from None

    def load(self):
        scan(self.data, self.what, self.holds)
        try:
            return super().load()
        except UnsafePickleError as err:
            if str(err).startswith(self.what):
                raise
            raise UnsafePickleError(f"{self.what}: {err}") from None
