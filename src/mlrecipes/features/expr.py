"""The arithmetic of `expr` features: a small grammar parsed here, never Python's eval.

    expr   := term (("+" | "-") term)*
    term   := unary (("*" | "/") unary)*
    unary  := "-" unary | atom
    atom   := NUMBER | NAME | FUNC "(" expr ")" | "(" expr ")"
    FUNC   := log | exp | abs | sqrt

A NAME is a column of the table or an earlier feature. The tree is nested tuples:
("num", 1.0), ("name", "ret_1"), ("neg", t), ("+", a, b), ("call", "log", t).
"""

from __future__ import annotations

import re

from ..errors import UserError

FUNCTIONS = ("log", "exp", "abs", "sqrt")
_TOKEN = re.compile(r"\s*(?:(\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)|([A-Za-z_][A-Za-z0-9_]*)|(\S))")


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        number, name, symbol = match.groups()
        if symbol is not None and symbol not in "+-*/()":
            raise UserError(f"expression {text!r}: unexpected {symbol!r} (only + - * / ( ), numbers, "
                            f"names and {', '.join(FUNCTIONS)})")
        out.append(("num", number) if number is not None else ("name", name) if name is not None else ("op", symbol))
        pos = match.end()
    return out


def parse(text: str) -> tuple:
    tokens = _tokens(text)
    pos = 0

    def peek():
        return tokens[pos] if pos < len(tokens) else ("end", "")

    def take(expected: str | None = None):
        nonlocal pos
        token = peek()
        if token[0] == "end" or (expected is not None and token[1] != expected):
            found = "the end" if token[0] == "end" else repr(token[1])
            raise UserError(f"expression {text!r}: expected {expected or 'a value'}, found {found}")
        pos += 1
        return token

    def binary(operators, operand):
        def rule():
            left = operand()
            while peek() in (("op", o) for o in operators):
                op = take()[1]
                left = (op, left, operand())
            return left
        return rule

    def unary():
        if peek() == ("op", "-"):
            take()
            return ("neg", unary())
        return atom()

    def atom():
        kind, value = take()
        if kind == "num":
            return ("num", float(value))
        if kind == "name":
            if peek() == ("op", "("):
                if value not in FUNCTIONS:
                    raise UserError(f"expression {text!r}: unknown function {value!r} (known: {', '.join(FUNCTIONS)})")
                take("(")
                inner = expr()
                take(")")
                return ("call", value, inner)
            return ("name", value)
        if value == "(":
            inner = expr()
            take(")")
            return inner
        raise UserError(f"expression {text!r}: expected a value, found {value!r}")

    term = binary("*/", unary)
    expr = binary("+-", term)
    tree = expr()
    if pos != len(tokens):
        raise UserError(f"expression {text!r}: unexpected {tokens[pos][1]!r}")
    return tree


def names(tree: tuple) -> list[str]:
    """The names an expression reads, in order of first use."""
    if tree[0] == "name":
        return [tree[1]]
    if tree[0] == "num":
        return []
    found = [n for child in tree[1:] if isinstance(child, tuple) for n in names(child)]
    return list(dict.fromkeys(found))


def to_polars(tree: tuple):
    """The tree as a Polars expression (float arithmetic: 1 / 0 is inf, as in numpy and pandas)."""
    import polars as pl

    kind = tree[0]
    if kind == "num":
        return pl.lit(tree[1], dtype=pl.Float64)
    if kind == "name":
        return pl.col(tree[1]).cast(pl.Float64)
    if kind == "neg":
        return -to_polars(tree[1])
    if kind == "call":
        inner = to_polars(tree[2])
        return {"log": inner.log, "exp": inner.exp, "abs": inner.abs, "sqrt": inner.sqrt}[tree[1]]()
    left, right = to_polars(tree[1]), to_polars(tree[2])
    return {"+": left + right, "-": left - right, "*": left * right, "/": left / right}[kind]


def to_sql(tree: tuple) -> str:
    """The tree as SQL arithmetic (the DuckDB side of bench/features.py)."""
    kind = tree[0]
    if kind == "num":
        return repr(tree[1])
    if kind == "name":
        return f'CAST("{tree[1]}" AS DOUBLE)'
    if kind == "neg":
        return f"(-{to_sql(tree[1])})"
    if kind == "call":
        return f"{'ln' if tree[1] == 'log' else tree[1]}({to_sql(tree[2])})"
    return f"({to_sql(tree[1])} {kind} {to_sql(tree[2])})"
