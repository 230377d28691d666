"""Hard-but-equivalent (gold, predicted) pairs, by the classes an outside benchmark found missed,
with near misses beside them. Labels: True must match, False must not. Used by
tests/rewards/test_math_recall.py and bench/math.py's ``recall:`` line.
"""

T, F = True, False

RECALL = {
    "name on the left": [
        ("t^2+3", "h(t)=t^2+3", T), ("h(t)=t^2+3", "t^2+3", T), ("2x+1", "y = 2x+1", T),
        ("5", "k_{min} = 5", T), ("5", "k_{\\min} = 5", T), ("\\frac{1}{2}", "p = \\frac{1}{2}", T),
        ("t^2+3", "h(t)=t^2+4", F), ("5", "k_{min} = 6", F), ("3x", "f(x) = 3x", T), ("3x", "f(x) = 3", F),
    ],
    "renamed bound variable": [
        ("h(t)=2t", "h(s)=2s", T), ("f(x)=x^2+1", "f(t)=t^2+1", T), ("g(x)=\\sqrt{x}", "g(u)=\\sqrt{u}", T),
        ("h(t)=2t", "h(s)=2t", F), ("f(x)=x^2+1", "f(t)=t^2-1", F),
    ],
    "chained equalities": [
        ("7", "x = y = 7", T), ("7", "a = b = c = 7", T), ("12", "x = 5 + 7 = 12", T),
        ("7", "x = y = 8", F), ("12", "x = 5 + 7 = 13", F),
    ],
    "A and B, labelled lists": [
        ("2, 3", "2 \\text{ and } 3", T), ("2, 3", "3 and 2", T), ("2, 9", "\\text{Smallest: } 2, \\text{ Largest: } 9", T),
        ("2, 9", "Smallest: 2, Largest: 9", T), ("-1, 4", "x = -1 \\text{ and } x = 4", T), ("1, 2, 3", "1, 2, and 3", T),
        ("2, 3", "2 \\text{ and } 4", F), ("2, 9", "Smallest: 2, Largest: 8", F), ("2, 3", "2", F),
    ],
    "unordered tuples": [
        ("3, 5, 7", "(3, 5, 7)", T), ("3, 5, 7", "(7, 5, 3)", T), ("\\{1, 2\\}", "\\{2, 1\\}", T),
        ("3, 5, 7", "(3, 5, 8)", F), ("(1, 2)", "(2, 1)", F),
    ],
    "intervals, inequalities, set-builder": [
        ("(2,5]", "2 < x \\le 5", T), ("(2,5]", "\\{x \\mid 2 < x \\le 5\\}", T), ("(2,5]", "\\{x : 2 < x \\le 5\\}", T),
        ("(-\\infty,\\infty)", "\\mathbb{R}", T), ("\\mathbb{R}", "(-\\infty, \\infty)", T),
        ("(-\\infty, 1) \\cup (3, \\infty)", "(3,\\infty)\\cup(-\\infty,1)", T), ("[0, \\infty)", "x \\ge 0", T),
        ("(2,5]", "2 \\le x \\le 5", F), ("(2,5]", "\\{x \\mid 2 < x < 5\\}", F), ("\\mathbb{R}", "(0, \\infty)", F),
    ],
    "pm expanded": [
        ("1 \\pm \\sqrt{2}", "1+\\sqrt{2}, 1-\\sqrt{2}", T), ("\\pm 3", "3, -3", T), ("2 \\pm i", "2+i, 2-i", T),
        ("\\pm 3", "3", F), ("1 \\pm \\sqrt{2}", "1+\\sqrt{2}", F),
    ],
    "ordinals and units": [
        ("7", "7^{\\text{th}}", T), ("7", "7^{th}", T), ("20", "20\\text{th minute}", T), ("3", "3rd", T),
        ("20", "\\text{the } 20^{\\text{th}} \\text{ minute}", T), ("12", "12 \\text{ cm}", T),
        ("7", "8^{\\text{th}}", F), ("20", "21st", F),
    ],
    "floor and delimiters": [
        ("\\left\\lfloor \\dfrac{k}{3} \\right\\rfloor", "\\lfloor k/3 \\rfloor", T),
        ("\\lfloor \\frac{n}{2} \\rfloor", "\\left\\lfloor\\frac{n}{2}\\right\\rfloor", T), ("\\lceil x \\rceil", "\\left\\lceil x \\right\\rceil", T),
        ("\\lfloor \\frac{n}{2} \\rfloor", "\\lceil \\frac{n}{2} \\rceil", F), ("\\lfloor k/3 \\rfloor", "k/3", F),
    ],
    "font-wrapped and written numbers": [
        ("3", "\\text{3}", T), ("3", "\\mathbf{3}", T), ("3", "\\textbf{3}", T), ("1000", "1{,}000", T), ("1000", "1\\,000", T),
        ("\\frac{1}{2}", "½", T), ("5\\frac{1}{2}", "5½", T), ("\\frac{1}{3}", "0.\\overline{3}", T), ("\\frac{1}{6}", "0.1\\overline{6}", T),
        ("\\frac{4}{33}", "0.\\overline{12}", T), ("3", "\\text{4}", F), ("1000", "1{,}001", F), ("\\frac{1}{3}", "0.\\overline{6}", F),
    ],
    "degrees": [
        ("30^\\circ", "30", T), ("30^\\circ", "30 \\text{ degrees}", T), ("30^\\circ", "30°", T), ("30", "30^{\\circ}", T),
        ("30^\\circ", "60^\\circ", F),
    ],
    "empty set": [
        ("\\emptyset", "\\varnothing", T), ("\\emptyset", "\\{\\}", T), ("\\varnothing", "∅", T), ("\\emptyset", "\\{0\\}", F),
    ],
    "case-insensitive text": [
        ("\\text{Yes}", "yes", T), ("yes", "YES", T), ("\\text{no}", "No", T), ("\\text{odd}", "\\text{Odd}", T),
        ("\\text{Tuesday}", "tuesday", T), ("\\text{yes}", "no", F), ("\\text{odd}", "even", F),
    ],
}

ALL = [row for rows in RECALL.values() for row in rows]
