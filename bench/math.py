"""Our math checker vs math-verify on the same labelled pairs.

Pairs come from the gold answers of GSM8K (test) and MATH-500 in ../shared/data: each gold is
paired with equivalent rewritings (``42`` -> ``42.0``, ``\\frac{a}{b}`` -> ``(a)/(b)``,
``\\dfrac``, an added ``\\text{ units}``, a thousands separator, a dollar sign) labelled True, and
with near misses (off by one, sign flip, swapped fraction, a factor of 10, a dropped root)
labelled False. Both checkers see the same completion text ``... \\boxed{pred}`` and the same
gold, so both pay for extraction and parsing.

Reported: agreement with the labels for each checker, where each goes wrong (a few examples per
kind of pair), checks per second in one process for each, and ours through the runner's process
pool.

    .venv/bin/python bench/math.py [--gsm8k 600] [--workers 4]
Then the labelled hacking set (tests/rewards/math_hacks.py) and the hard-equivalence set
(tests/rewards/math_recall.py), each for ours and math-verify, and the slowest single check.

Last lines:
  math: ours_acc=<a> mv_acc=<b> ours_cps=<x> mv_cps=<y> speedup=<x/y>
  hacks: ours_false_pay=<n>/<N> ours_recall=<k>/<K> mv_false_pay=<n>/<N> mv_recall=<k>/<K> worst_ms=<t>
  recall: ours=<k>/<K> ours_false=<n>/<N> mv=<k>/<K> mv_false=<n>/<N>
"""

from __future__ import annotations

import sys

# Run as a script, this file's folder comes first on sys.path and its name would shadow the
# standard library's math module: drop the folder before anything imports math.
_HERE = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
sys.path[:] = [p for p in sys.path if p not in ("", ".", _HERE) and not p.endswith("/bench")]

import argparse
import json
import os
import random
import re
import time
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rewards.math import equivalent, extract_answer, math_answer  # noqa: E402
from rewards.runner import CheckerSpec, Scorer  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
_INT = re.compile(r"-?\d+")
_FRAC = re.compile(r"(-?)\\[dt]?frac\{([^{}]+)\}\{([^{}]+)\}")


# ----------------------------------------------------------------------------- pairs


def gold_answers(gsm8k_n: int) -> list[tuple[str, str]]:
    """(source, gold) for a GSM8K sample and all of MATH-500."""
    out = []
    with open(DATA / "gsm8k_test.jsonl") as f:
        rows = [json.loads(line) for line in f]
    for r in rows[:gsm8k_n]:
        out.append(("gsm8k", r["answer"].rsplit("####", 1)[1].strip().replace(",", "")))
    with open(DATA / "math500_test.jsonl") as f:
        for line in f:
            sol = json.loads(line)["answer"]
            gold = extract_answer(sol)
            if gold:
                out.append(("math500", gold))
    return out


def rewritings(gold: str) -> list[tuple[str, str]]:
    """(kind, text) forms that mean the same as ``gold``."""
    out = [("same", gold)]
    if _INT.fullmatch(gold):
        n = int(gold)
        out += [("decimal", f"{gold}.0"), ("units", f"{gold} \\text{{ units}}"), ("dollar", f"\\${gold}")]
        if abs(n) >= 1000:
            out.append(("thousands", f"{n:,}"))
    m = _FRAC.fullmatch(gold)
    if m:
        sign, a, b = m.groups()
        out += [("slash", f"{sign}({a})/({b})"), ("dfrac", f"{sign}\\dfrac{{{a}}}{{{b}}}")]
    elif "\\frac" in gold:
        out.append(("dfrac", gold.replace("\\frac", "\\dfrac")))
    out += _structural_rewritings(gold)
    return out


def _structural_rewritings(gold: str) -> list[tuple[str, str]]:
    """Harder equivalent forms: decimals for fractions, reordered lists, inequalities, degrees."""
    out = []
    m = _FRAC.fullmatch(gold)
    if m and _INT.fullmatch(m.group(2)) and _INT.fullmatch(m.group(3)):
        a, b = int(m.group(2)), int(m.group(3))
        if b and all(p in (2, 5) for p in _prime_factors(b)) and b <= 10_000:
            out.append(("frac_to_decimal", f"{m.group(1)}{format(Decimal(a) / Decimal(b), 'f')}"))
    if gold.endswith("^\\circ"):
        out.append(("no_degrees", gold[: -len("^\\circ")]))
    if gold.startswith("\\text{") and gold.endswith("}"):
        out.append(("text_case", gold[6:-1].upper()))
    items = [x.strip() for x in gold.split(",")]
    thousands = re.fullmatch(r"\d{1,3}(?:,\d{3})+", gold)
    if len(items) > 1 and not thousands and not any(c in gold for c in "()[]{}!"):
        out.append(("list_reordered", ", ".join(reversed(items))))
    iv = re.fullmatch(r"([(\[])([^,]+),([^,]+)([)\]])", gold)
    if iv and "infty" not in gold and (iv.group(1), iv.group(4)) != ("(", ")"):  # (a, b) may be a point
        lo, hi = iv.group(2).strip(), iv.group(3).strip()
        lop = "<" if iv.group(1) == "(" else "\\le"
        hop = "<" if iv.group(4) == ")" else "\\le"
        out.append(("inequality", f"{lo} {lop} x {hop} {hi}"))
    if "\\left" in gold:
        out.append(("no_left_right", gold.replace("\\left", "").replace("\\right", "")))
    if re.fullmatch(r"\d+\\sqrt\{?\d+\}?", gold):
        k, r = re.findall(r"\d+", gold)
        out.append(("sqrt_merged", f"\\sqrt{{{int(k) ** 2 * int(r)}}}"))
    return out


def _prime_factors(n: int) -> list[int]:
    out, d = [], 2
    while d * d <= n:
        while n % d == 0:
            out.append(d)
            n //= d
        d += 1
    return out + ([n] if n > 1 else [])


def near_misses(gold: str) -> list[tuple[str, str]]:
    """(kind, text) forms that look close but are wrong."""
    out = []
    if _INT.fullmatch(gold):
        n = int(gold)
        out += [("off_by_one", str(n + 1)), ("off_by_one", str(n - 1)), ("times_10", str(n * 10))]
        if n != 0:
            out.append(("sign_flip", str(-n)))
    m = _FRAC.fullmatch(gold)
    if m:
        sign, a, b = m.groups()
        if a.strip() != b.strip():
            out.append(("swapped_fraction", f"{sign}\\frac{{{b}}}{{{a}}}"))
        out.append(("sign_flip", f"{'' if sign else '-'}\\frac{{{a}}}{{{b}}}"))
    if "\\sqrt" in gold and "," not in gold:
        out.append(("dropped_root", re.sub(r"\\sqrt\{?(\w+)\}?", r"\1", gold, count=1)))
    iv = re.fullmatch(r"([(\[])([^,]+),([^,]+)([)\]])", gold)
    if iv:
        flip = {"(": "[", "[": "(", ")": "]", "]": ")"}
        out.append(("bracket_flip", f"{flip[iv.group(1)]}{iv.group(2)},{iv.group(3)}{iv.group(4)}"))
    items = [x.strip() for x in gold.split(",")]
    if (
        len(items) > 2
        and not re.fullmatch(r"\d{1,3}(?:,\d{3})+", gold)
        and not any(c in gold for c in "()[]{}!")
    ):
        out.append(("list_item_dropped", ", ".join(items[:-1])))
    if re.fullmatch(r"\d+\\sqrt\{?\d+\}?", gold):
        k, r = re.findall(r"\d+", gold)
        out.append(("sqrt_moved", f"\\sqrt{{{int(k) * int(r)}}}"))
    if "\\pi" in gold and "," not in gold:
        out.append(("pi_dropped", gold.replace("\\pi", "")))
    if re.fullmatch(r"-?\d+\.\d+", gold):
        out.append(("off_by_one", f"{float(gold) + 1:.{len(gold.split('.')[1])}f}"))
    return out


def build_pairs(gsm8k_n: int) -> list[tuple[str, str, str, str, bool]]:
    """(source, kind, gold, pred, label)."""
    pairs = []
    for source, gold in gold_answers(gsm8k_n):
        for kind, pred in rewritings(gold):
            pairs.append((source, kind, gold, pred, True))
        for kind, pred in near_misses(gold):
            if pred != gold:
                pairs.append((source, kind, gold, pred, False))
    random.Random(0).shuffle(pairs)
    return pairs


def completion(pred: str) -> str:
    return f"Let me work it out. The final result is $\\boxed{{{pred}}}$."


# ----------------------------------------------------------------------------- checkers


def ours(gold: str, text: str) -> bool:
    return bool(math_answer(text, {"answer": gold}).correct)


def mv_checker():
    from math_verify import parse, verify

    def check(gold: str, text: str) -> bool:
        try:
            return bool(verify(parse(f"${gold}$"), parse(text)))
        except Exception:
            return False

    return check


def run_single(check, pairs) -> tuple[list[bool], float]:
    t0 = time.perf_counter()
    got = [check(gold, completion(pred)) for _, _, gold, pred, _ in pairs]
    return got, time.perf_counter() - t0


def run_pool(pairs, workers: int) -> tuple[list[bool], float]:
    texts = [completion(pred) for _, _, _, pred, _ in pairs]
    fields = [{"answer": gold} for _, _, gold, _, _ in pairs]
    with Scorer([CheckerSpec("math_answer")], timeout_s=5.0, workers=workers) as scorer:
        scorer.score(texts[:workers], fields[:workers])  # warm the workers
        t0 = time.perf_counter()
        batch = scorer.score(texts, fields)
        wall = time.perf_counter() - t0
    return [bool(c) for c in batch.correct], wall


# ----------------------------------------------------------------------------- report


def accuracy(got: list[bool], pairs) -> float:
    return sum(g == p[4] for g, p in zip(got, pairs)) / len(pairs)


def report_errors(name: str, got: list[bool], pairs, show: int = 3) -> None:
    wrong = [(p, g) for g, p in zip(got, pairs) if g != p[4]]
    by_kind = Counter((p[0], p[1], "false accept" if g else "false reject") for p, g in wrong)
    print(f"\n{name}: {len(wrong)} disagreements with the labels")
    examples = defaultdict(list)
    for p, g in wrong:
        examples[(p[0], p[1], "false accept" if g else "false reject")].append(p)
    for key, count in by_kind.most_common():
        print(f"  {count:4d}  {key[0]:8s} {key[1]:16s} {key[2]}")
        for _, _, gold, pred, _ in examples[key][:show]:
            print(f"          gold={gold!r}  pred={pred!r}")


def hack_figures(mv) -> str:
    """False pays on the hacking set, recall on its honest rows, and the slowest check (ms)."""
    from tests.rewards.math_hacks import HACKS, HONEST

    hacks = [(g, t) for rows in HACKS.values() for g, t in rows]
    worst = 0.0
    ours_paid = 0
    for g, t in hacks:
        t0 = time.perf_counter()
        ours_paid += ours(g, t)
        worst = max(worst, time.perf_counter() - t0)
    ours_honest = sum(ours(g, t) for g, t in HONEST)
    # math-verify on the cost class can run for minutes: only the rest is scored for it
    cheap = [(g, t) for cls, rows in HACKS.items() if not cls.startswith("9") for g, t in rows]
    mv_paid = sum(mv(g, t) for g, t in cheap)
    mv_honest = sum(mv(g, t) for g, t in HONEST)
    by_class = {cls: sum(ours(g, t) for g, t in rows) for cls, rows in HACKS.items()}
    print(
        "\nhacks paid by class (ours):", ", ".join(f"{c}: {n}/{len(HACKS[c])}" for c, n in by_class.items())
    )
    return (
        f"hacks: ours_false_pay={ours_paid}/{len(hacks)} ours_recall={ours_honest}/{len(HONEST)} "
        f"mv_false_pay={mv_paid}/{len(cheap)} mv_recall={mv_honest}/{len(HONEST)} worst_ms={worst * 1000:.0f}"
    )


def recall_figures(mv) -> str:
    from tests.rewards.math_recall import ALL

    pos = [(g, p) for g, p, lab in ALL if lab]
    neg = [(g, p) for g, p, lab in ALL if not lab]

    def count(check, rows):
        return sum(check(g, completion(p)) for g, p in rows)

    return (
        f"recall: ours={count(ours, pos)}/{len(pos)} ours_false={count(ours, neg)}/{len(neg)} "
        f"mv={count(mv, pos)}/{len(pos)} mv_false={count(mv, neg)}/{len(neg)}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gsm8k", type=int, default=600, help="GSM8K test golds to use")
    ap.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    args = ap.parse_args()

    pairs = build_pairs(args.gsm8k)
    kinds = Counter((p[0], p[4]) for p in pairs)
    print(f"pairs: {len(pairs)} ({', '.join(f'{s} {lab}: {n}' for (s, lab), n in sorted(kinds.items()))})")

    equivalent("1", "1")  # import sympy lazily before timing, as a long-lived scorer would have
    ours_got, ours_s = run_single(ours, pairs)
    mv = mv_checker()
    mv("1", "1")
    mv_got, mv_s = run_single(mv, pairs)
    pool_got, pool_s = run_pool(pairs, args.workers)
    assert pool_got == ours_got or sum(a != b for a, b in zip(pool_got, ours_got)) < 5

    n = len(pairs)
    ours_acc, mv_acc = accuracy(ours_got, pairs), accuracy(mv_got, pairs)
    ours_cps, mv_cps, pool_cps = n / ours_s, n / mv_s, n / pool_s
    print(f"\n{'checker':28s} {'acc':>7s} {'checks/s':>10s}")
    print(f"{'ours (1 process)':28s} {ours_acc:7.4f} {ours_cps:10.0f}")
    print(f"{'math-verify (1 process)':28s} {mv_acc:7.4f} {mv_cps:10.0f}")
    print(f"{f'ours (runner, {args.workers} workers)':28s} {accuracy(pool_got, pairs):7.4f} {pool_cps:10.0f}")
    report_errors("ours", ours_got, pairs)
    report_errors("math-verify", mv_got, pairs)
    hacks_line, recall_line = hack_figures(mv), recall_figures(mv)
    print(
        f"math: ours_acc={ours_acc:.4f} mv_acc={mv_acc:.4f} ours_cps={ours_cps:.0f} "
        f"mv_cps={mv_cps:.0f} speedup={ours_cps / mv_cps:.1f}"
    )
    print(hacks_line)
    print(recall_line)


if __name__ == "__main__":
    main()
