"""Alertmanager label matchers: `name=value`, `name!=value`, `name=~regex`, `name!~regex`.

Semantics follow Alertmanager: regexes are anchored (`^(?:re)$`), and a missing label has the value
"", so `team=""` matches alerts without a team label and `team!=""` requires one.
"""

from __future__ import annotations

import re
import signal
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

_MATCHER = re.compile(
    r"""^\s*(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*(?P<op>=~|!~|!=|=)\s*(?P<value>"(?:[^"\\]|\\.)*"|[^"]*?)\s*$"""
)
_UNESCAPE = re.compile(r"\\(.)")


@dataclass(frozen=True)
class Matcher:
    """One parsed matcher; `matches` takes a label set."""

    name: str
    op: str
    value: str
    _regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    def matches_value(self, value: str) -> bool:
        """Whether a label value (\"\" when the label is absent) satisfies this matcher."""
        if self.op == "=":
            return value == self.value
        if self.op == "!=":
            return value != self.value
        found = self.regex_matches(value)
        return found if self.op == "=~" else not found

    def regex_matches(self, value: str) -> bool:
        """Whether `value` fully matches this matcher's regex (for =~ and !~)."""
        assert self._regex is not None
        return self._regex.fullmatch(value) is not None

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether a label set satisfies this matcher."""
        return self.matches_value(labels.get(self.name, ""))

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.name}{self.op}"{escaped}"'


def parse_matcher(text: str) -> Matcher:
    """Parse one matcher; ValueError naming the problem when it is not valid."""
    found = _MATCHER.match(text)
    if not found:
        raise ValueError(f"invalid matcher {text!r}: expected name=value, name!=value, name=~re or name!~re")
    name, op, raw = found["name"], found["op"], found["value"]
    if raw.startswith('"'):
        value = _UNESCAPE.sub(r"\1", raw[1:-1])
    else:
        if any(ch in raw for ch in "=!~"):
            raise ValueError(f"invalid matcher {text!r}: quote values that contain =, ! or ~")
        value = raw
    regex = None
    if op in ("=~", "!~"):
        try:
            regex = re.compile(value, re.DOTALL)  # used with fullmatch: anchored like Alertmanager
        except re.error as exc:
            raise ValueError(f"invalid matcher {text!r}: bad regular expression: {exc}") from None
    return Matcher(name, op, value, regex)


_REGEX_SYNTAX = frozenset(".^$*+?{}[]()|\\")
_QUANTIFIERS = frozenset("*?{")


def literal_prefix(pattern: str) -> str:
    """Text every full match of `pattern` starts with ("" when there is none to be sure of).

    `pod-12.*` -> `pod-12`; `pod-1?` -> `pod-` (a quantifier makes the last character optional);
    anything with `|` -> "" (an alternative may start differently); `\\d…`, `(?i)…` -> "".
    """
    if "|" in pattern:
        return ""
    found: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern) and pattern[i + 1] in _REGEX_SYNTAX | {"-", "/", "#", " "}:
            found.append(pattern[i + 1])
            i += 2
            continue
        if ch in _REGEX_SYNTAX:
            break
        found.append(ch)
        i += 1
    if i < len(pattern) and pattern[i] in _QUANTIFIERS and found:
        found.pop()
    return "".join(found)


class RegexTooSlow(ValueError):
    """A regex matcher ran past its time budget (nested repetition such as `(a+)+` backtracks exponentially)."""


REGEX_BUDGET_SECONDS = 0.5


def values_matching(m: Matcher, values: Sequence[str], *, budget: float = REGEX_BUDGET_SECONDS) -> list[str]:
    """The values that `m`'s regex fully matches; RegexTooSlow once that takes longer than `budget` seconds.

    Python's regex engine backtracks: one crafted pattern over one long value can take hours, and it
    runs on the event loop, where it would stop every webhook. Alertmanager's RE2 cannot backtrack;
    here a timer interrupts the match instead (the engine checks for signals while it runs). Timers
    are only available in the main thread; elsewhere the values are matched without a budget.
    """
    if threading.current_thread() is not threading.main_thread():
        return [v for v in values if m.regex_matches(v)]

    def expire(_signum: int, _frame: object) -> None:
        raise RegexTooSlow(f"the regex of {m} took longer than {budget:g} s; simplify it (no nested repetition)")

    previous = signal.signal(signal.SIGALRM, expire)
    try:
        signal.setitimer(signal.ITIMER_REAL, budget)
        try:
            return [v for v in values if m.regex_matches(v)]
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    finally:
        signal.signal(signal.SIGALRM, previous)


def parse_matchers(texts: Iterable[str]) -> list[Matcher]:
    """Parse several matchers."""
    return [parse_matcher(t) for t in texts]


def match_all(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    """True when every matcher matches (an empty list matches everything)."""
    return all(m.matches(labels) for m in matchers)
