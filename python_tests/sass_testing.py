"""Reading `cuobjdump -sass` output: kernels, their instructions, and the loops of each kernel.

A loop is the natural loop of a back edge (a branch to an address at or before its own): the
branch's target and every instruction that can reach the branch without passing the target.
CALL.REL (the slow paths of IEEE division and square root) and the subroutines they call
count as straight-line code: they hold no loads of their own.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

_FUNCTION = re.compile(r"^\s*Function : (\S+)\s*$", re.MULTILINE)
_INSTRUCTION = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;")
_BRANCH = re.compile(r"^(@!?U?P\w+\s+)?BRA(\.\S+)?\s+0x([0-9a-f]+)$")
_ENDS_BLOCK = re.compile(r"^(EXIT|RET\S*|BRX\S*|JMX\S*)\b")


@dataclass(frozen=True)
class Instruction:
    address: int
    text: str  # "@P0 LDG.E.128 R4, desc[UR4][R2.64]", without the ';'

    @property
    def opcode(self) -> str:
        """The mnemonic with its modifiers, e.g. "LDG.E.128"."""
        words = self.text.split()
        return words[1] if words[0].startswith("@") else words[0]

    @property
    def predicated(self) -> bool:
        return self.text.startswith("@")


def kernels(sass: str) -> dict[str, list[Instruction]]:
    """Mangled kernel name -> its instructions, in address order."""
    heads = list(_FUNCTION.finditer(sass))
    out = {}
    for head, following in zip(heads, [*heads[1:], None], strict=True):
        body = sass[head.end() : following.start() if following else len(sass)]
        out[head.group(1)] = [
            Instruction(int(address, 16), text) for address, text in _INSTRUCTION.findall(body)
        ]
    return out


def _successors(code: list[Instruction]) -> list[list[int]]:
    """Per instruction, the indices control can go to next."""
    index = {ins.address: i for i, ins in enumerate(code)}
    out = []
    for i, ins in enumerate(code):
        branch = _BRANCH.match(ins.text)
        if branch:
            targets = [index[int(branch.group(3), 16)]]
            if branch.group(1):  # predicated: may fall through
                targets.append(i + 1)
        elif _ENDS_BLOCK.match(ins.text) and not ins.predicated:
            targets = []
        else:
            targets = [i + 1]
        out.append([t for t in targets if t < len(code)])
    return out


def loops(code: list[Instruction]) -> Iterator[list[Instruction]]:
    """The natural loop of each loop header (back edges to one target merged), in address
    order of their instructions."""
    successors = _successors(code)
    predecessors: list[list[int]] = [[] for _ in code]
    for i, targets in enumerate(successors):
        for t in targets:
            predecessors[t].append(i)
    latches: dict[int, list[int]] = {}
    for i, targets in enumerate(successors):
        for t in targets:
            if t <= i:
                latches.setdefault(t, []).append(i)
    for header, sources in sorted(latches.items()):
        body = {header}
        stack = [s for s in sources if s not in body]
        body.update(stack)
        while stack:
            for p in predecessors[stack.pop()]:
                if p not in body:
                    body.add(p)
                    stack.append(p)
        yield [code[i] for i in sorted(body)]


def loads(code: list[Instruction]) -> list[str]:
    """The opcodes of the loads from global memory in code: LDG, and generic LD (what nvcc emits
    where it cannot tell the address is global)."""
    return [ins.opcode for ins in code if re.match(r"LDG?\.", ins.opcode)]


def stores(code: list[Instruction]) -> list[str]:
    """The opcodes of the stores to global memory in code: STG, and generic ST."""
    return [ins.opcode for ins in code if re.match(r"STG?\.", ins.opcode)]


def access_bits(opcode: str) -> int:
    """The width of a load or store: LDG.E -> 32, LDG.E.U16 -> 16, LDG.E.128.CONSTANT -> 128."""
    for part in opcode.split(".")[1:]:
        width = re.fullmatch(r"[US]?(8|16|32|64|128)", part)
        if width:
            return int(width.group(1))
    return 32
